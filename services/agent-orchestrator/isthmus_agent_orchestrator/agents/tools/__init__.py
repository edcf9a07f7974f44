"""The agents' tools: the built-ins (:mod:`.builtins`: search, calculator, http_get, subagent), the
tenant's registry that filters and calls them (:mod:`.registry`) and the book of approvals that sensitive
calls wait on (:mod:`.approvals`). Import the submodules directly (nothing is loaded here)."""
