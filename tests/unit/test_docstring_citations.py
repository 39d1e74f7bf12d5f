"""Every citation in the repository's ``.py`` and ``.md`` files can be followed from a fresh clone.

Docstrings and docs cite the paper's section or the official release's file, never a document outside this
repository.  Two checks over every tracked ``.py`` / ``.md`` file, each failure naming ``file:line``:

1. *Documents outside the repository*: the design notes kept beside the project (``REFERENCE`` cited by section
   sign, or its ``.md`` file) and, generally, any ``<name>.md`` that resolves neither from the repository root nor
   from the citing file's folder to a tracked file.  Two small, explicit allowances: markdown files the code
   *writes* (``GENERATED_MD``) and the CI host's setup notes beside the checkout (``ENVIRONMENT_DOCS``); an
   allowance nothing uses any more fails too.
2. *Release citations*: ``release: <path>`` optionally followed by ``, ``Name``, ``Class.method``...`` (the one
   format the docstrings use) must name a file of the official release (``tests/data/release_files.txt``: the
   file list of github.com/facebookresearch/actionmesh plus its pinned ``third_party/TripoSG`` submodule) and,
   for ``.py`` / ``.yaml`` files, names defined in that file (``tests/data/release_symbols.txt``).  Any other
   mention of a release-shaped ``.py`` / ``.yaml`` path (``actionmesh/...``, ``actionbench/...``,
   ``third_party/TripoSG/...``) must name a release file as well.

Both data files were made from the release's git trees (origin and commits in their header lines), so the test
needs no network and no mirror.  The scanners are also run on small synthetic texts below, so a scanner that
stops matching anything fails.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

import data_dirs

ROOT = data_dirs.REPO_ROOT
DATA = data_dirs.DATA_DIR
THIS = PurePosixPath(Path(__file__).resolve().relative_to(ROOT).as_posix())

# Markdown files that code in this repository writes (not documents it cites): name -> who writes it.
GENERATED_MD = {
    "gpu_table.md": "benchmarks/gpu_check.py (``table``) writes it under benchmarks/gpu_out/",
    "chained_workflows.md": "tests/host/test_real_host.py writes it beside its screenshots",
}
# Setup notes of the CI host, beside the checkout (../shared, which .ci/run and the real-host tests use):
# environment, not project documentation.
ENVIRONMENT_DOCS = {
    "../shared/hosts/README.md": "ComfyUI host setup read by .ci/run and tests/host/test_real_host.py",
    "../shared/hosts/coremodels/README.md": "core-model stand-ins used by tests/host/test_real_host.py",
}

# "REFERENCE §4", "REFERENCE.md §1-2", "``REFERENCE.md`` §1" (any case).
_OUTSIDE_NOTES = re.compile(r"\bREFERENCE(?:\.md)?[`'\"]*\s*§", re.IGNORECASE)
# A markdown file name or path, not part of a URL or of a longer name (``x.md.tmp``).
_MD_REF = re.compile(r"(?<![\w/.~-])((?:[\w.~-]+/)*[\w.~-]*[\w-]\.md)(?!\.?\w)")
# "release: <path>[, ``Name``...]"; the path may be wrapped in backticks and the citation may wrap lines
# (in comments the next line starts with '#').
_RELEASE = re.compile(
    r"release:[\s#]*`{0,2}(?P<path>[\w.-]+(?:/[\w.-]+)+|[\w-]+\.[A-Za-z]\w*)`{0,2}"
    r"(?P<names>(?:,[\s#]*`{1,2}[\w.]+`{1,2})*)"
)
_NAME = re.compile(r"`{1,2}([\w.]+)`{1,2}")
# Any release-shaped source path, cited with or without "release:".
_RELEASE_PATH = re.compile(r"(?<![\w/.-])((?:actionmesh|actionbench|third_party/TripoSG)/[\w./-]*\.(?:py|yaml))(?!\w)")
_INDEXED = (".py", ".yaml")


def _tracked_files() -> list[str]:
    """Repository files as POSIX paths relative to ROOT: ``git ls-files``, else a walk of the tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        files = [f for f in out.decode("utf-8").split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("__pycache__", "build", "out", "tmp")
                           and not d.endswith(".egg-info")]
            files += [Path(dirpath, f).relative_to(ROOT).as_posix() for f in filenames]
    return sorted(f for f in files if (ROOT / f).is_file())


def _read_list(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#")]


TRACKED = _tracked_files()
TRACKED_SET = set(TRACKED)
TEXT_FILES = [f for f in TRACKED if f.endswith((".py", ".md"))]
RELEASE_FILES = set(_read_list("release_files.txt"))
RELEASE_NAMES: dict[str, set[str]] = {}
for _entry in _read_list("release_symbols.txt"):
    _path, _, _name = _entry.partition("::")
    RELEASE_NAMES.setdefault(_path, set()).add(_name)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _resolves(ref: str, citing_file: str) -> bool:
    """True when ``ref`` names a tracked file, from the repository root or from the citing file's folder."""
    for base in (PurePosixPath("."), PurePosixPath(citing_file).parent):
        candidate = os.path.normpath(str(base / ref)).replace(os.sep, "/")
        if not candidate.startswith("../") and candidate in TRACKED_SET:
            return True
    return False


def outside_document_problems(rel: str, text: str, used: set[str] | None = None) -> list[str]:
    """``file:line`` problems of check 1 in ``text`` (the content of ``rel``); allowances used go into ``used``."""
    used = set() if used is None else used
    problems = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in _OUTSIDE_NOTES.finditer(line):
            problems.append(f"{rel}:{lineno}: cites notes outside the repository ({m.group(0)!r}); cite the paper's "
                            f"section or 'release: <file>, ``Name``', or write the note itself here")
        for m in _MD_REF.finditer(line):
            ref = m.group(1)
            name = PurePosixPath(ref).name
            if name in GENERATED_MD:
                used.add(name)
            elif ref in ENVIRONMENT_DOCS:
                used.add(ref)
            elif not _resolves(ref, rel):
                problems.append(f"{rel}:{lineno}: cites {ref!r}, which is not a file of this repository "
                                f"(from the root or from {PurePosixPath(rel).parent}/)")
    return problems


def release_citation_problems(rel: str, text: str) -> tuple[list[str], int]:
    """``file:line`` problems of check 2 in ``text``, and the number of ``release:`` citations parsed."""
    problems, count, cited_at = [], 0, set()
    for m in _RELEASE.finditer(text):
        count += 1
        cited_at.add(m.start("path"))
        path = m.group("path").rstrip(".")
        where = f"{rel}:{_line_of(text, m.start())}"
        if path not in RELEASE_FILES:
            problems.append(f"{where}: 'release: {path}' is not a file of the official release "
                            f"(tests/data/release_files.txt)")
            continue
        names = [(n.group(1), m.start("names") + n.start()) for n in _NAME.finditer(m.group("names"))]
        if names and not path.endswith(_INDEXED):
            problems.append(f"{where}: names {[n for n, _ in names]} given for {path}, whose names are not indexed "
                            f"(.py/.yaml only)")
            continue
        for name, pos in names:
            if name not in RELEASE_NAMES.get(path, set()):
                problems.append(f"{rel}:{_line_of(text, pos)}: {name!r} is not defined in release file {path} "
                                f"(tests/data/release_symbols.txt)")
    for m in _RELEASE_PATH.finditer(text):
        if m.start(1) not in cited_at and m.group(1) not in RELEASE_FILES:
            problems.append(f"{rel}:{_line_of(text, m.start())}: {m.group(1)!r} is not a file of the official release")
    return problems, count


def _scan_repository():
    outside, release, used, n_release = [], [], set(), 0
    for rel in TEXT_FILES:
        text = (ROOT / rel).read_text(encoding="utf-8", errors="replace")
        if PurePosixPath(rel) == THIS:  # this file spells out the mistakes it looks for
            continue
        outside += outside_document_problems(rel, text, used)
        found, n = release_citation_problems(rel, text)
        release += found
        n_release += n
    return outside, release, used, n_release


OUTSIDE, RELEASE, USED, N_RELEASE = _scan_repository()


def test_files_were_scanned():
    """The walk found the repository's text files (a broken walk would pass every check below vacuously)."""
    assert "README.md" in TEXT_FILES and "actionmesh_core/models/layers.py" in TEXT_FILES, TEXT_FILES[:10]
    assert len(TEXT_FILES) > 50


def test_no_citation_of_documents_outside_the_repository():
    assert not OUTSIDE, "citations a maintainer cannot follow from a clone:\n" + "\n".join(OUTSIDE)


def test_every_allowance_is_still_used():
    stale = (set(GENERATED_MD) | set(ENVIRONMENT_DOCS)) - USED
    assert not stale, f"allowances no file uses any more (remove them): {sorted(stale)}"


def test_release_citations_name_release_files_and_names():
    assert N_RELEASE >= 40, f"only {N_RELEASE} 'release:' citations parsed: is the pattern still right?"
    assert not RELEASE, "release citations that do not match the release:\n" + "\n".join(RELEASE)


def test_release_index_files_state_their_origin_and_agree():
    head = [ln for ln in (DATA / "release_files.txt").read_text(encoding="utf-8").splitlines() if ln.startswith("#")]
    header = "\n".join(head)
    assert "github.com/facebookresearch/actionmesh" in header and "github.com/VAST-AI-Research/TripoSG" in header
    assert len(re.findall(r"\b[0-9a-f]{40}\b", header)) == 2, "both commits must be stated"
    for must in ("actionmesh/pipeline.py", "actionmesh/model/temporal_denoiser.py",
                 "third_party/TripoSG/triposg/models/autoencoders/autoencoder_kl_triposg.py"):
        assert must in RELEASE_FILES
    assert set(RELEASE_NAMES) <= RELEASE_FILES, sorted(set(RELEASE_NAMES) - RELEASE_FILES)
    assert "ActionMeshDenoiser.forward" in RELEASE_NAMES["actionmesh/model/temporal_denoiser.py"]


# ------------------------------------------------------------------ the scanners on synthetic text


@pytest.mark.parametrize("line", [
    '"""Frame input (REFERENCE §4): loading."""',
    "Everything here follows ``REFERENCE.md`` §1-2 (module names).",
    "    # see reference §2.9",
    "The released sizes (REFERENCE.md §1).",
    "Design notes: docs/NOTES.md.",
])
def test_outside_document_scanner_flags(line):
    problems = outside_document_problems("actionmesh_core/x.py", f"a\n{line}\n")
    assert problems and all(p.startswith("actionmesh_core/x.py:2:") for p in problems), problems


@pytest.mark.parametrize("rel,line", [
    ("README.md", "see `benchmarks/RESULTS.md` and README.md."),
    ("benchmarks/RESULTS.md", "Script: `benchmarks/bench_pipeline.py` (see `README.md`)."),
    ("tests/data/README.md", "(see `parity/README.md`)"),
    ("benchmarks/gpu_check.py", 'tmp = out_dir() / "gpu_table.md.tmp"; out_dir() / "gpu_table.md"'),
    ("README.md", "as ../shared/hosts/README.md shows; https://github.com/a/b/blob/main/NOTES.md"),
    ("actionmesh_core/x.py", "the reference mesh §3.4 ... ActionMesh paper §3.3"),
])
def test_outside_document_scanner_accepts(rel, line):
    assert outside_document_problems(rel, line) == []


@pytest.mark.parametrize("text,expect", [
    ("(release: actionmesh/model/temporal_autoencoder.py, ``ActionMeshAutoencoder.forward``)", 0),
    ("release:\n    actionmesh/model/utils/embeddings.py, ``TimestepEmbedder.forward``,\n    ``scale_timestep``.", 0),
    ("# release: actionmesh/configs/actionmesh.yaml,\n# ``model.scheduler.shift``", 0),
    ("release: third_party/TripoSG/triposg/models/embeddings.py, ``FrequencyPositionalEmbedding.forward``", 0),
    ("release: `actionmesh/configs/actionmesh.yaml`)", 0),
    ("(release: ``sample_meshes``) (release: RMBG-1.4) (the release: 100 000) (release: /512 on a", 0),
    ("release: actionmesh/models/temporal_autoencoder.py, ``ActionMeshAutoencoder.forward``", 1),
    ("release: actionmesh/model/temporal_autoencoder.py, ``ActionMeshAutoencoder.decode``", 1),
    ("release: actionmesh/configs/actionmesh.yaml, ``model.scheduler.shfit``", 1),
    ("release: README.md, ``Intro``", 1),
    ("see ``actionmesh/model/unet.py``", 1),
    ("release: triposg/models/embeddings.py", 1),
])
def test_release_citation_scanner(text, expect):
    problems, count = release_citation_problems("actionmesh_core/x.py", text)
    assert len(problems) == expect, problems
    assert all(p.startswith("actionmesh_core/x.py:") for p in problems)
