"""The web console: see and operate the platform in a browser (Starlette, Jinja2, htmx)."""
