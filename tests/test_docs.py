"""The docs stay true: README commands, API coverage, runnable pages, and a
strict MkDocs build."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import keras_guided

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second():
    readme = _read("README.md")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("keras-guided demo")
    assert commands[1] in _read(".ci", "run")


def test_every_public_name_has_an_api_entry():
    api = _read("docs", "api.md")
    documented = set(re.findall(r"^::: keras_guided\.(\w+)", api, re.M))
    missing = [
        name
        for name in keras_guided.__all__
        if name != "__version__" and name not in documented
    ]
    assert not missing, f"add to docs/api.md: {missing}"
    assert "keras_guided.__version__" in api


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", _read(*path), re.S)


def test_getting_started_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_python_blocks(("docs", "getting-started.md")))
    namespace = {"__name__": "__getting_started__"}
    exec(compile(code, "docs/getting-started.md", "exec"), namespace)
    assert namespace["small"].count_params() < (
        namespace["model"].count_params()
    )
    assert os.path.exists(namespace["path"])


@pytest.mark.skipif(
    shutil.which("mkdocs") is None
    and not os.path.exists(
        os.path.join(os.path.dirname(sys.executable), "mkdocs")
    ),
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)
def test_mkdocs_strict_build(tmp_path):
    mkdocs = shutil.which("mkdocs") or os.path.join(
        os.path.dirname(sys.executable), "mkdocs"
    )
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_budget_howto_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_python_blocks(("docs", "howto", "budget.md")))
    namespace = {"__name__": "__budget_howto__"}
    exec(compile(code, "docs/howto/budget.md", "exec"), namespace)
    report = namespace["pruning"].budget_report
    assert report["value"] <= report["goal"]
    assert namespace["flops_after"] <= 0.11 * namespace["flops_before"]
    assert namespace["accuracy"] > 0.9


def test_several_inputs_export_howto_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("keras_hub")
    monkeypatch.chdir(tmp_path)
    code = "\n".join(
        _python_blocks(("docs", "howto", "export-several-inputs.md"))
    )
    namespace = {"__name__": "__several_inputs_howto__"}
    exec(
        compile(code, "docs/howto/export-several-inputs.md", "exec"), namespace
    )
    assert namespace["report"].ok
    assert namespace["score"].shape == (1, 1)
    for name in (
        "text.tflite",
        "text_int8.tflite",
        "bert.tflite",
        "siamese_int8.tflite",
    ):
        assert os.path.getsize(tmp_path / name) > 0


def test_keras_hub_howto_runs_as_written(tmp_path, monkeypatch):
    keras_hub = pytest.importorskip("keras_hub")
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_python_blocks(("docs", "howto", "keras-hub.md")))
    namespace = {"__name__": "__keras_hub_howto__"}
    exec(compile(code, "docs/howto/keras-hub.md", "exec"), namespace)
    ratio = namespace["flops_after"] / namespace["flops_before"]
    assert 0.49 <= ratio <= 0.5
    assert namespace["report"].max_abs_diff < 1e-5
    assert namespace["accuracy"] > 0.6
    assert namespace["reloaded"].count_params() == (
        namespace["small"].count_params()
    )
    assert 0.495 <= namespace["gpt2_ratio"] <= 0.5
    trained = namespace["gpt2_trained"]
    assert type(trained) is keras_hub.models.GPT2CausalLM
    assert trained.backbone.get_config()["intermediate_dim"] < 32
    x = namespace["gpt2_inputs"](24)
    np.testing.assert_allclose(
        namespace["gpt2_reloaded"](x), namespace["gpt2_small"](x), atol=1e-6
    )
    uniform = namespace["gpt2_uniform"]
    assert type(uniform) is keras_hub.models.GPT2CausalLM
    np.testing.assert_allclose(
        namespace["gpt2_from_preset"](x), uniform(x), atol=1e-6
    )
    assert namespace["generated"]["token_ids"].shape == (1, 8)
    assert namespace["export_report"].ok


def test_calibration_howto_runs_as_written(tmp_path, monkeypatch):
    keras_hub = pytest.importorskip("keras_hub")
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_python_blocks(("docs", "howto", "calibration.md")))
    namespace = {"__name__": "__calibration_howto__"}
    exec(compile(code, "docs/howto/calibration.md", "exec"), namespace)
    small = namespace["small"]
    assert type(small) is keras_hub.models.LlamaCausalLM
    assert small.backbone.get_config()["intermediate_dim"] < 32
    assert namespace["report"].max_abs_diff < 1e-5
    assert len(namespace["pruning"].unit_coefficients) == 1


def test_distill_decoder_howto_runs_as_written(tmp_path, monkeypatch):
    keras_hub = pytest.importorskip("keras_hub")
    monkeypatch.chdir(tmp_path)
    code = "\n".join(_python_blocks(("docs", "howto", "distill-decoder.md")))
    namespace = {"__name__": "__distill_decoder_howto__"}
    exec(compile(code, "docs/howto/distill-decoder.md", "exec"), namespace)
    student, teacher = namespace["student"], namespace["teacher"]
    assert type(student) is keras_hub.models.LlamaCausalLM
    assert student.count_params() <= 0.75 * teacher.count_params()
    assert namespace["report"].tokens == 2_000
    assert namespace["generated"]["token_ids"].shape == (1, 17)
    assert type(namespace["reloaded"]) is keras_hub.models.LlamaCausalLM
    exported = namespace["exported"]
    assert exported.ok and (tmp_path / "student.tflite").stat().st_size == (
        exported.bytes
    )


def test_readme_cifar_claims_are_numbers_of_the_generated_page():
    readme = " ".join(_read("README.md").split())
    page = _read("docs", "benchmarks.md")
    paragraph = readme.split("On CIFAR-10", 1)[1].split("Transformers", 1)[0]
    anchors = re.findall(r"docs/benchmarks\.md#([\w-]+)", paragraph)
    slugs = {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", page, re.M)
    }
    assert anchors and set(anchors) <= slugs, (anchors, sorted(slugs))
    intervals = re.findall(r"\[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", paragraph)
    assert len(intervals) == 4
    numbers = re.findall(r"[+-]?\d+\.\d\d\b", paragraph)
    missing = [x for x in intervals + numbers if x not in page]
    assert not missing, f"README numbers not on docs/benchmarks.md: {missing}"
    assert "tie" in paragraph
