"""AlignEZ Studio: the Gradio app (local or as a Hugging Face Space)."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from ui.studio import launch

if __name__ == "__main__":
    launch()
