"""The web studio (Gradio)."""

from longplay.ui.studio import Studio

__all__ = ["Studio"]
