"""Stage 6, serving: the loaded model behind one shared scheduler, and an OpenAI-compatible API.

`served` (the model a server holds, swapped atomically, with its `engine.scheduler`) →
`axis_store` (the axes a request may name: the presets' shipped packs and uploads) →
`openai_api` (`/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/v1/axes`). The
studio mounts the same routes beside its page; `alignez serve` runs them alone.
"""

from .axis_store import AxisStore
from .openai_api import openai_app, openai_router
from .served import ServedModel

__all__ = ["AxisStore", "ServedModel", "openai_app", "openai_router"]
