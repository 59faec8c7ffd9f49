"""The datasets ponder knows how to fetch, with pinned checksums and their public sources.

The files themselves never live in the repository (their licences and size say so); this module
only records where they come from and what their bytes must hash to, so `ponder data pull` can
fetch and verify them, and `find_dataset_dir` can say where a local copy is.

Layout: every file has a path `FOLDER/FILE`, exactly as in the recorded shared folder
(`$PONDER_SHARED_DATA`); a mirror serves that same layout, and a pull writes it under
`<data dir>/datasets/`.

Problem sets get one spec each (`math500`, `gsm8k`, `matharena_competitions`) although they share
the `problem_sets/` folder: two of them are byte-for-byte copies of files in public repositories
and can be pulled from there, while the third is assembled from many upstream files and needs a
mirror. One spec per set lets a user fetch what they need, from the source it actually has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ponder import paths
from ponder.errors import PonderError


class UnknownDatasetError(PonderError):
    """A dataset name that the registry does not know."""


def github_raw_url(repo: str, commit: str, path: str) -> str:
    """Commit-pinned raw URL: the bytes behind it cannot change, unlike a branch URL."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset.

    `path` is `FOLDER/FILE`, the same in the shared folder, on a mirror and in a pulled copy.
    `sha256`/`size` pin the mirror bytes; they are None only for a file that exists upstream
    alone and whose hash is not known in advance (recorded on first download instead).
    `upstream_url` is the commit-pinned public file with the same content and format, or None
    when there is none (a conversion). `upstream_verified` says the pinned sha256 was checked
    to hold for the upstream bytes too; otherwise an upstream download is trusted on first use
    and its hash recorded. `in_mirror` is False for upstream-only files, which a mirror does not
    serve.
    """

    path: str
    sha256: str | None
    size: int | None
    upstream_url: str | None = None
    upstream_verified: bool = False
    in_mirror: bool = True

    def __post_init__(self) -> None:
        folder, _, name = self.path.partition("/")
        if not folder or not name or "/" in name or ".." in self.path.split("/"):
            raise ValueError(f"dataset file path must be FOLDER/FILE, got {self.path!r}")
        if self.in_mirror and (self.sha256 is None or self.size is None):
            raise ValueError(f"{self.path}: a mirror file needs a pinned sha256 and size")
        if not self.in_mirror and self.upstream_url is None:
            raise ValueError(f"{self.path}: a file outside the mirror needs an upstream URL")
        if self.upstream_verified and (self.sha256 is None or self.upstream_url is None):
            raise ValueError(f"{self.path}: upstream_verified needs a sha256 and an upstream URL")

    @property
    def folder(self) -> str:
        return self.path.partition("/")[0]

    @property
    def name(self) -> str:
        return self.path.partition("/")[2]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: what it is, who made it, under which licence, and its files.

    `needs_mirror` is True when no upstream file has the format ponder reads (the recorded copy
    was extracted or converted); `mirror_reason` then says why, for `data list` and errors.
    """

    name: str
    title: str
    description: str
    license: str
    attribution: str
    upstream_repo: str
    upstream_commit: str
    files: tuple[DatasetFile, ...]
    needs_mirror: bool = False
    mirror_reason: str = ""

    def __post_init__(self) -> None:
        folders = {f.folder for f in self.files}
        if len(folders) != 1:
            raise ValueError(f"dataset {self.name}: files must share one folder, got {folders}")
        if self.needs_mirror != (not self.upstream_files):
            raise ValueError(f"dataset {self.name}: needs_mirror disagrees with its upstream URLs")
        if self.needs_mirror and not self.mirror_reason:
            raise ValueError(f"dataset {self.name}: a mirror-only dataset must say why")

    @property
    def folder(self) -> str:
        return self.files[0].folder

    @property
    def mirror_files(self) -> tuple[DatasetFile, ...]:
        """The files a mirror serves (the shared folder's layout)."""
        return tuple(f for f in self.files if f.in_mirror)

    @property
    def upstream_files(self) -> tuple[DatasetFile, ...]:
        """The files fetched when no mirror is given; empty for mirror-only datasets."""
        return tuple(f for f in self.files if f.upstream_url is not None)

    @property
    def size(self) -> int:
        """Bytes of the mirror layout."""
        return sum(f.size or 0 for f in self.mirror_files)

    @property
    def upstream_repo_url(self) -> str:
        return f"https://github.com/{self.upstream_repo}/tree/{self.upstream_commit}"


_RBS_REPO = "SamirHossain099/reasoning-budget-sweep"
_RBS_COMMIT = "3792659c40db682423efbef70c81213140258b41"
_MMLU_PRO_REPO = "TIGER-AI-Lab/MMLU-Pro"
_MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
_ROUTELLM_REPO = "lm-sys/RouteLLM"
_ROUTELLM_COMMIT = "0b64fdafe049e596a3f5657c219329f24af24198"
_MATHARENA_SITE_REPO = "eth-sri/matharena.ai"
_MATHARENA_SITE_COMMIT = "8fdd9aba6ddc5faf354790bf895e0e47a1b450af"
_MATHARENA_REPO = "eth-sri/matharena"
_MATHARENA_COMMIT = "81f103e38b1df076afa65ee0a3ffbe148d42e6d2"
_DYNASOR_REPO = "hao-ai-lab/Dynasor"
_DYNASOR_COMMIT = "0d2f1b93a60e031cfc7fb43843d2b736b225960c"

_SPECS = (
    DatasetSpec(
        name="reasoning_budget_sweep",
        title="Reasoning Budget Sweep",
        description=(
            "One row per response: 12 small open models (0.6B-7B) x AIME 2024/2025 and a "
            "100-problem MATH-500 subset x token caps 512-16384 x 3 seeds (11,118 rows)."
        ),
        license="CC-BY-4.0",
        attribution='"Reasoning Budget Sweep", S. Hossain (SamirHossain099/reasoning-budget-sweep)',
        upstream_repo=_RBS_REPO,
        upstream_commit=_RBS_COMMIT,
        files=(
            # The mirror splits the single upstream CSV by benchmark (same columns); upstream
            # offers the one CSV, which the importer reads as well. Its hash is not known here,
            # so it is recorded on first download and verified on later pulls.
            DatasetFile(
                "reasoning_budget_sweep/reasoning_budget_sweep_aime.csv",
                "7a8b6d2a0b1dd544511f5acea11aead07f0ca0d9ee419e7041060934c724d889",
                492434,
            ),
            DatasetFile(
                "reasoning_budget_sweep/reasoning_budget_sweep_math500.csv",
                "2ec88e78e4bebdb0416ac3d7c160f95c35e2046467ee7fb6dc438f55567eb183",
                752791,
            ),
            DatasetFile(
                "reasoning_budget_sweep/COVERAGE.txt",
                "3e5296026c6cbac37651b0b33137b86f8ab7ee335636c8135ffc3ade6250e382",
                4104,
            ),
            DatasetFile(
                "reasoning_budget_sweep/reasoning_budget_sweep.csv",
                None,
                None,
                upstream_url=github_raw_url(
                    _RBS_REPO, _RBS_COMMIT, "data/reasoning_budget_sweep.csv"
                ),
                in_mirror=False,
            ),
        ),
    ),
    DatasetSpec(
        name="mmlu_pro_math",
        title="MMLU-Pro math: 29 models x 1,351 questions",
        description=(
            "Correctness of 29 non-reasoning models on the 1,351 MMLU-Pro math questions "
            "(5-shot CoT, one sample each), plus the questions (39,121 rows)."
        ),
        license="MIT (data); repository Apache-2.0",
        attribution="MMLU-Pro, TIGER-AI-Lab (Wang et al., 2024), eval_results model outputs",
        upstream_repo=_MMLU_PRO_REPO,
        upstream_commit=_MMLU_PRO_COMMIT,
        files=(
            DatasetFile(
                "mmlu_pro_math/mmlu_pro_math_per_model.csv",
                "d82f36f77d8a34d9b627d117a920afc836ac0c55e758822fa3f4443051fe0c12",
                1683079,
            ),
            DatasetFile(
                "mmlu_pro_math/mmlu_pro_math_questions.jsonl",
                "91cc9c137d5be3eb2da620ade08ecb3a7897b6c1eb735053d752283bd16b0d10",
                596891,
            ),
        ),
        needs_mirror=True,
        mirror_reason=(
            "extracted from the per-model eval_results/model_outputs_*_5shots.zip archives "
            "upstream (math category only); no upstream file has this format"
        ),
    ),
    DatasetSpec(
        name="routellm_gsm8k",
        title="RouteLLM GSM8K responses: Mixtral-8x7B vs GPT-4",
        description=(
            "GSM8K test (1,319 questions): correctness and full responses of "
            "Mixtral-8x7B-Instruct and GPT-4-1106, and the list of contaminated prompts."
        ),
        license="Apache-2.0",
        attribution="RouteLLM, LMSYS (Ong et al., 2024); GSM8K by OpenAI (Cobbe et al., 2021)",
        upstream_repo=_ROUTELLM_REPO,
        upstream_commit=_ROUTELLM_COMMIT,
        files=(
            # Verbatim copies of the upstream files: compared with an indexed copy of the
            # repository (same text; the CSV header matches upstream's own generator script),
            # so the pinned hash is enforced for either source.
            DatasetFile(
                "routellm_gsm8k/gsm8k_responses.csv",
                "1f38ed03db354a020f71e92022383dc3cf37bbf2694dea4daaeea7b6c43fe57b",
                1291062,
                upstream_url=github_raw_url(
                    _ROUTELLM_REPO, _ROUTELLM_COMMIT, "routellm/evals/gsm8k/gsm8k_responses.csv"
                ),
                upstream_verified=True,
            ),
            DatasetFile(
                "routellm_gsm8k/contaminated_prompts.jsonl",
                "1f5a7be02148ee0f7f306d233ba76a6573c826cee9499a34f8ef938a1a84c234",
                6282,
                upstream_url=github_raw_url(
                    _ROUTELLM_REPO,
                    _ROUTELLM_COMMIT,
                    "routellm/evals/gsm8k/contaminated_prompts.jsonl",
                ),
                upstream_verified=True,
            ),
        ),
    ),
    DatasetSpec(
        name="matharena_aime2025_I",
        title="MathArena leaderboard, AIME 2025 I",
        description=(
            "16 models on AIME 2025 I: per-problem accuracy over 4 runs, mean output tokens "
            "and cost; o3-mini low/medium/high gives a real reasoning-effort curve."
        ),
        license="MIT",
        attribution="MathArena, ETH SRI (Balunovic et al., 2025); AIME problems (c) MAA",
        upstream_repo=_MATHARENA_SITE_REPO,
        upstream_commit=_MATHARENA_SITE_COMMIT,
        files=(
            DatasetFile(
                "matharena_aime2025_I/per_model_summary.csv",
                "0af509b81b260803ef48ac16f6ebc5cd414be5988b7dc1c831d889bb12c8ad3d",
                1534,
            ),
            DatasetFile(
                "matharena_aime2025_I/per_problem_accuracy.csv",
                "258fb621dfddc98a884c9f28471a9c6f58da5b873a3f596b25754d0ee3a75b09",
                6518,
            ),
        ),
        needs_mirror=True,
        mirror_reason=(
            "converted to CSV from the website's static/js/table_data.js and secondary.js; "
            "no upstream file has this format"
        ),
    ),
    DatasetSpec(
        name="math500",
        title="MATH-500 problems",
        description=(
            "The 500-problem MATH test subset with subject, level 1-5, solution, answer and "
            "unique_id (problem_sets/math500_test.jsonl)."
        ),
        license="MIT",
        attribution=(
            "MATH (Hendrycks et al., 2021), 500-problem subset of PRM800K (Lightman et al., 2023); "
            "copy from hao-ai-lab/Dynasor"
        ),
        upstream_repo=_DYNASOR_REPO,
        upstream_commit=_DYNASOR_COMMIT,
        files=(
            # Believed to be a verbatim copy, but its upstream bytes were not checked here:
            # an upstream download is compared with this pin and otherwise trusted on first use.
            DatasetFile(
                "problem_sets/math500_test.jsonl",
                "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
                446564,
                upstream_url=github_raw_url(
                    _DYNASOR_REPO,
                    _DYNASOR_COMMIT,
                    "benchmark/TokenDeprivation/data/math500/test.jsonl",
                ),
            ),
        ),
    ),
    DatasetSpec(
        name="gsm8k",
        title="GSM8K test problems",
        description="GSM8K test set, 1,319 questions with worked answers ending in '#### N'.",
        license="MIT",
        attribution="GSM8K, OpenAI (Cobbe et al., 2021); copy from lm-sys/RouteLLM",
        upstream_repo=_ROUTELLM_REPO,
        upstream_commit=_ROUTELLM_COMMIT,
        files=(
            # Same situation as math500: believed verbatim, not checked against upstream.
            DatasetFile(
                "problem_sets/gsm8k_test.jsonl",
                "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
                749738,
                upstream_url=github_raw_url(
                    _ROUTELLM_REPO, _ROUTELLM_COMMIT, "routellm/evals/gsm8k/test.jsonl"
                ),
            ),
        ),
    ),
    DatasetSpec(
        name="matharena_competitions",
        title="MathArena competition problems",
        description=(
            "150 competition problems with answers: AIME 2024 I/II, AIME 2025 I/II, "
            "HMMT Feb 2024/2025, CMIMC 2024."
        ),
        license="MIT (statements (c) MAA / HMMT / CMIMC)",
        attribution="MathArena, ETH SRI (Balunovic et al., 2025); statements (c) MAA, HMMT, CMIMC",
        upstream_repo=_MATHARENA_REPO,
        upstream_commit=_MATHARENA_COMMIT,
        files=(
            DatasetFile(
                "problem_sets/matharena_competitions.jsonl",
                "015b3fabd287a2579bb7d15fd40cb06be27d021bb0b5462413e9d18245ccac5e",
                69836,
            ),
        ),
        needs_mirror=True,
        mirror_reason=(
            "assembled from many per-problem files under data/{aime,hmmt,cmimc}/ upstream; "
            "no upstream file has this format"
        ),
    ),
)

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Every known dataset by name, in a stable order."""


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec for `name`, or an error that lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None


def default_dest() -> Path:
    """Where `ponder data pull` writes: `<data dir>/datasets`, outside any repository."""
    return paths.data_dir() / "datasets"


def _complete(folder: Path, files: tuple[DatasetFile, ...]) -> bool:
    return bool(files) and all((folder / f.name).is_file() for f in files)


def find_dataset_dir(name: str) -> Path | None:
    """The folder a dataset's files can be read from, or None if there is no local copy.

    The shared folder wins (it is what tests and CI have); then the pulled copy, in either the
    mirror layout or the upstream layout. A folder counts only when all of the dataset's files of
    one layout are there, because problem sets share a folder and a pull may have been cut short.
    Checksums are not re-checked here: a pull verified them before moving each file into place.
    """
    spec = get_dataset(name)
    shared = paths.shared_data_dir() / spec.folder
    if _complete(shared, spec.mirror_files):
        return shared
    pulled = default_dest() / spec.folder
    if _complete(pulled, spec.mirror_files) or _complete(pulled, spec.upstream_files):
        return pulled
    return None
