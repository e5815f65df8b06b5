"""``longplay serve``: arguments, the missing-model error, and what reaches uvicorn."""

from __future__ import annotations

import argparse
import logging

import pytest
import uvicorn

from conftest import SAO1_TINY, SAOS_TINY
from longplay.cli import serve as serve_cli
from longplay.server.settings import PUBLIC_PATHS


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="longplay")
    serve_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["serve", *argv])


@pytest.fixture
def served(monkeypatch) -> dict:
    """Stands in for uvicorn.run: records what would be served."""
    seen: dict = {}

    def fake_run(app, host, port, **kwargs):
        seen.update(app=app, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_missing_model_is_a_clear_error(served, monkeypatch, tmp_path):
    import longplay.assets

    # No --model, and an installation without the bundled model.
    monkeypatch.setattr(longplay.assets, "DEMO_DIR", tmp_path / "missing")
    args = parse()
    with pytest.raises(FileNotFoundError, match="--model PATH"):
        args.run(args)
    assert served == {}


def test_serve_builds_the_app_from_the_flags(served, monkeypatch, caplog):
    monkeypatch.delenv(serve_cli.API_KEY_ENV, raising=False)
    args = parse("--model", str(SAO1_TINY), "--port", "8123", "--queue-size", "3",
                 "--max-steps", "20", "--max-outputs", "2", "--max-duration", "1.5",
                 "--keep-finished", "5")
    assert args.host == "127.0.0.1"
    with caplog.at_level(logging.WARNING):
        assert args.run(args) == 0
    assert not caplog.records  # loopback: no warning
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    state = served["app"].state.server
    assert state.settings.queue_size == 3 and state.settings.max_finished_jobs == 5
    assert state.settings.api_key is None
    assert state.model.name == "sao1_tiny"
    assert state.limits.max_steps == 20 and state.limits.max_outputs == 2
    assert state.limits.max_duration_s == 1.5


def test_public_address_without_key_warns_and_key_comes_from_env(served, monkeypatch, caplog):
    monkeypatch.delenv(serve_cli.API_KEY_ENV, raising=False)
    args = parse("--model", str(SAO1_TINY), "--host", "0.0.0.0")
    with caplog.at_level(logging.WARNING):
        args.run(args)
    assert "without --api-key" in caplog.text

    caplog.clear()
    monkeypatch.setenv(serve_cli.API_KEY_ENV, "from-env")
    args = parse("--model", str(SAO1_TINY), "--host", "0.0.0.0", "--workers", "2")
    with caplog.at_level(logging.WARNING):
        args.run(args)
    assert not caplog.records
    state = served["app"].state.server
    assert state.settings.api_key == "from-env" and state.queue.workers == 2


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert serve_cli.is_loopback(host) is loopback


def test_precision_and_compile_reach_the_pipeline(served, monkeypatch):
    from longplay.pipelines import TextToMusicPipeline

    monkeypatch.delenv(serve_cli.API_KEY_ENV, raising=False)
    seen: list[dict] = []
    original = TextToMusicPipeline.from_pretrained.__func__

    def spy(cls, path, **kwargs):
        seen.append(kwargs)
        return original(cls, path, **{**kwargs, "compile": False})  # no compiling here

    monkeypatch.setattr(TextToMusicPipeline, "from_pretrained", classmethod(spy))
    args = parse("--model", str(SAO1_TINY), "--precision", "bf16", "--compile")
    assert args.run(args) == 0
    assert seen and seen[0]["precision"] == "bf16" and seen[0]["compile"] is True
    args = parse("--model", str(SAO1_TINY))
    assert args.run(args) == 0
    assert seen[-1]["precision"] == "auto" and seen[-1]["compile"] is False  # the defaults


def test_api_key_help_names_the_paths_that_stay_open(capsys):
    """The paths the help calls open are the ones the app serves without the key
    (test_server_api.py::test_the_key_guards_every_path_but_the_public_ones)."""
    with pytest.raises(SystemExit):
        parse("--help")
    help_text = " ".join(capsys.readouterr().out.split())
    api_key_help = help_text.split("--api-key KEY", 2)[2].split("--queue-size")[0]
    assert f"every endpoint but {', '.join(PUBLIC_PATHS)}" in api_key_help
    assert "/docs" in PUBLIC_PATHS and "/openapi.json" in PUBLIC_PATHS


def test_the_bundled_model_drafts_by_default_and_draft_none_turns_it_off(monkeypatch):
    """`longplay serve` and `longplay ui` build their pipelines with one factory: the
    bundled demo model drafts with demo-fast unless --draft none; other models draft only
    when asked; a draft that cannot serve is refused before any weights load."""
    from longplay.assets import DEMO_FAST_DIR
    from longplay.cli.options import pipeline_factory
    from longplay.pipelines import TextToMusicPipeline
    from longplay.pipelines.drafts import DraftedPipeline

    def factory(*argv: str):
        args = parse(*argv)
        args.model = serve_cli.model_or_demo(args.model)
        return pipeline_factory(args)

    made = factory()
    assert made.func == DraftedPipeline.from_pretrained and made.args[1] == DEMO_FAST_DIR
    assert factory("--draft", "none").func == TextToMusicPipeline.from_pretrained
    assert factory("--model", str(SAO1_TINY)).func == TextToMusicPipeline.from_pretrained
    made = factory("--model", str(SAO1_TINY), "--draft", str(SAO1_TINY))
    assert made.func == DraftedPipeline.from_pretrained

    def no_loading(*args, **kwargs):
        raise AssertionError("loaded weights before refusing")

    monkeypatch.setattr(DraftedPipeline, "from_pretrained", no_loading)
    for argv, message in (((str(SAO1_TINY), "demo-fast"), "must share the model's VAE"),
                          ((str(SAOS_TINY), str(SAOS_TINY)), "no default draft refinement")):
        with pytest.raises(ValueError, match=message):
            factory("--model", argv[0], "--draft", argv[1])
