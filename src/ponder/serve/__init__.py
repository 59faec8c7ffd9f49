"""`ponder serve`: an OpenAI-compatible proxy that applies fitted policies per request.

Needs the `serve` extra (FastAPI, uvicorn, prometheus-client, the openai client).
"""

from ponder.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
