"""Training data: typed examples and batches, audio-folder and tar-shard datasets of
random windows with timing conditioning and prompts, and pre-encoded latents."""

from longplay.data.audio_folder import AudioFolderDataset
from longplay.data.folder import (
    DEFAULT_EXTENSIONS,
    AudioFile,
    DatasetSummary,
    read_metadata_table,
    scan_audio_folder,
)
from longplay.data.latents import (
    EncodeSummary,
    LatentDataset,
    LatentFolderWriter,
    LatentIndexEntry,
    encode_folder,
    latent_folder_header,
    read_latent_index,
)
from longplay.data.prompts import (
    CAPTION_KEYS,
    DEFAULT_PROMPT_BUILDER,
    PROMPT_FIELDS,
    PromptBuilder,
    PromptField,
)
from longplay.data.shards import TarShardDataset, split_shards, write_tar_shards
from longplay.data.types import (
    AudioBatch,
    AudioExample,
    LatentBatch,
    LatentExample,
    collate_audio,
    collate_latents,
)
from longplay.data.windows import SILENCE_PEAK, WindowReader, example_generator

__all__ = [
    "CAPTION_KEYS",
    "DEFAULT_EXTENSIONS",
    "DEFAULT_PROMPT_BUILDER",
    "PROMPT_FIELDS",
    "SILENCE_PEAK",
    "AudioBatch",
    "AudioExample",
    "AudioFile",
    "AudioFolderDataset",
    "DatasetSummary",
    "EncodeSummary",
    "LatentBatch",
    "LatentDataset",
    "LatentExample",
    "LatentFolderWriter",
    "LatentIndexEntry",
    "PromptBuilder",
    "PromptField",
    "TarShardDataset",
    "WindowReader",
    "collate_audio",
    "collate_latents",
    "encode_folder",
    "example_generator",
    "latent_folder_header",
    "read_latent_index",
    "read_metadata_table",
    "scan_audio_folder",
    "split_shards",
    "write_tar_shards",
]
