"""The web console and REST API: `create_app(settings, client)` in `hcm_soc.web.app` builds the
FastAPI application (services, security headers, error mapping, routers); `serve` runs it.

Nothing is imported here, so that importing a sub-module stays cheap (no FastAPI app is built
at import time)."""
