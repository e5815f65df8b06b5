"""A folder of adapter folders, applied by name (the server's ``--lora-dir``, the
studio's adapter list)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from longplay.adapters.lora import ADAPTER_CONFIG, BaseIdentity, LoRAAdapter, load_adapter
from longplay.errors import AdapterError

logger = logging.getLogger(__name__)


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

    def usable(self) -> list[tuple[str, LoRAAdapter]]:
        """The adapters that load and fit the model, by name."""
        found = []
        for name in self.names():
            try:
                found.append((name, self.get(name)))
            except ValueError as error:  # AdapterError, CheckpointError
                logger.warning("adapter %s is not usable here: %s", name, error)
        return found

    def get(self, name: str) -> LoRAAdapter:
        """The adapter called ``name``, loaded and checked against the model."""
        if self.folder is None:
            raise AdapterError("no adapter folder is configured (longplay serve / ui "
                               "--lora-dir DIR)")
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
