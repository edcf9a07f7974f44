"""The agents' memory: conversations (sessions of follow-up questions), the deterministic condenser that
turns a follow-up into a standalone question, and opt-in episodic memory (a principal's earlier questions
and answers found by embedding similarity).

Submodules are imported where they are used (``module.py``'s build), never here: importing this package
opens nothing and loads no I/O library.
"""
