"""The FastAPI example: a web app that dispatches with ``await bus.dispatch_async(...)``."""
