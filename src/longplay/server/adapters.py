"""The server's adapter folder: LoRA adapters that requests apply by name."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from longplay.adapters import ADAPTER_CONFIG, BaseIdentity, LoRAAdapter, load_adapter
from longplay.errors import AdapterError


class AdapterLibrary:
    """The adapter folders inside ``folder`` (None: no adapters), each read once, on first
    use, and checked against the served model (``identity``)."""

    def __init__(self, folder: Path | None,
                 identity: Callable[[], BaseIdentity] | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._identity = identity
        self._loaded: dict[str, LoRAAdapter] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The adapters available now (sub-folders with an adapter config)."""
        if self.folder is None:
            return []
        return sorted(p.name for p in self.folder.iterdir()
                      if p.is_dir() and (p / ADAPTER_CONFIG).is_file())

    def get(self, name: str) -> LoRAAdapter:
        """The adapter called ``name``, loaded and checked against the model."""
        if self.folder is None:
            raise AdapterError("this server has no adapter folder (longplay serve --lora-dir "
                               "DIR)")
        available = self.names()
        if name not in available:
            raise AdapterError(f"no adapter named {name!r} (available: "
                               f"{', '.join(available) or 'none'})")
        with self._lock:
            adapter = self._loaded.get(name)
            if adapter is None:
                adapter = load_adapter(self.folder / name)
                if self._identity is not None:
                    adapter.check_base(self._identity())
                self._loaded[name] = adapter
        return adapter
