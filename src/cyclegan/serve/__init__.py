"""`cyclegan serve`: a page and an HTTP API over Translators (the server's layer; it never imports training code).

    from cyclegan.serve import ServeSettings, create_app, load_models, parse_model_spec
    app = create_app(load_models([parse_model_spec("zebra=runs/h2z")]), ServeSettings(token="..."))
    # then any ASGI server: uvicorn.run(app, host="127.0.0.1", port=8000)

Needs the extra `cyclegan[serve]` (FastAPI, uvicorn, python-multipart).
"""

from .app import begin_shutdown, create_app
from .models import ModelSpec, ServedModel, load_models, parse_model_spec
from .settings import ServeSettings

__all__ = ["ModelSpec", "ServeSettings", "ServedModel", "begin_shutdown", "create_app",
           "load_models", "parse_model_spec"]
