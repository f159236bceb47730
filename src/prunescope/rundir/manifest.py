"""The schema of ``manifest.json``: a run directory from someone else is untrusted input.

Every manifest is validated on load, before any file it names is touched: a
value of the wrong type, a path that is absolute, holds ``..`` or could reach
outside the run directory, or JSON nested deeper than any manifest prunescope
writes, makes it a *damaged manifest* (one line naming the field, exit 2), never
an internal error. The validated dict is kept as it was read (the code works on
plain dicts); the schema only decides whether it may be used.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from prunescope.errors import RunDirError, first_problem, shorten

# prunescope writes manifests a few levels deep; 64 is far beyond any of them and far
# below the interpreter's recursion limit, which a hostile 100,000-deep file would hit.
MAX_DEPTH = 64
# A manifest of a 60-level run with every analysis is well under 1 MB.
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_PATH_CHARS = 512


def check_relative_path(rel: str) -> str:
    """A run-relative POSIX path: no absolute path, no ``..`` or ``.``, no empty part."""
    if not rel or len(rel) > MAX_PATH_CHARS:
        raise ValueError("a file path must have 1 to 512 characters")
    if "\x00" in rel or "\\" in rel:
        raise ValueError("a file path may not hold NUL or backslash characters")
    if rel.startswith("/"):
        raise ValueError("absolute paths are not run files")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise ValueError("a file path may not hold '..', '.' or empty parts")
    return rel


RelPath = Annotated[str, AfterValidator(check_relative_path)]
Number = StrictFloat | StrictInt
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
LevelKey = Annotated[str, Field(pattern=r"^\d{2,3}$")]
LevelNumber = Annotated[str, Field(pattern=r"^\d{1,3}$")]


class Record(BaseModel):
    # Fields this version does not know are kept and ignored (a newer prunescope may add
    # some); fields it knows must have the right type.
    model_config = ConfigDict(extra="allow", strict=True)


class FileRecord(Record):
    sha256: Sha256
    bytes: Annotated[StrictInt, Field(ge=0)]


class LevelRecord(Record):
    status: StrictStr | None = None
    network_sparsity: Annotated[Number, Field(ge=0, le=1)] | None = None
    test_accuracy: Annotated[Number, Field(ge=0, le=1)] | None = None
    seconds: Annotated[Number, Field(ge=0)] | None = None
    finished: StrictStr | None = None
    precision: StrictStr | None = None
    compiled: StrictBool | None = None


class LayerOrder(Record):
    stages: list[StrictStr]
    layers: list[StrictStr]
    layer_types: dict[StrictStr, StrictStr] | None = None  # runs since the trust checks
    batchnorm: StrictBool | None = None
    dense: dict[str, Any] | None = None  # what stays dense (models/inventory.py)


class AnalysisRecord(Record):
    settings: dict[str, Any]
    levels: list[Annotated[StrictInt, Field(ge=0)]]


class CheckpointRecord(Record):
    phase: Literal["pretrain", "level"]
    level: Annotated[StrictInt, Field(ge=0)] | None
    epoch: Annotated[StrictInt, Field(ge=0)]


class BranchRecord(Record):
    kind: StrictStr
    parent_masks: dict[LevelNumber, Sha256]
    parent_rewind: Sha256 | None = None  # the parent's rewind state: which run it branched


class EnvironmentRecord(Record):
    prunescope: StrictStr | None = None
    device: StrictStr | None = None


class ManifestSchema(Record):
    format: StrictStr
    format_version: StrictInt
    created: StrictStr
    model: StrictStr
    dataset: StrictStr
    environment: EnvironmentRecord
    files: dict[RelPath, FileRecord]
    pending: dict[RelPath, FileRecord] = Field(default_factory=dict)
    levels: dict[LevelKey, LevelRecord]
    sessions: list[dict[str, Any]]
    layer_order: LayerOrder | None = None
    analyses: dict[StrictStr, AnalysisRecord] = Field(default_factory=dict)
    checkpoint: CheckpointRecord | None = None
    config_history: list[dict[str, Any]] = Field(default_factory=list)
    config: dict[str, Any] | None = None
    data_fingerprint: dict[str, Any] | None = None
    report_runs: list[StrictStr] | None = None
    branch: BranchRecord | None = None
    skipped_analyses: dict[StrictStr, StrictStr] = Field(default_factory=dict)


def _depth(obj: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_json_bytes(data: bytes, what: str) -> Any:
    """Parse JSON; nesting deeper than :data:`MAX_DEPTH` (or deep enough to exhaust the
    parser's recursion) makes the file damaged, not an internal error."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON's, and
        # an integer of more than 4,300 digits (Python's int-to-str limit)
        raise RunDirError(f"{what} is damaged ({shorten(str(exc), 120)})") from None
    if _depth(obj) > MAX_DEPTH:
        raise RunDirError(f"{what} is damaged (JSON nested more than {MAX_DEPTH} deep)")
    return obj


def validate_manifest(manifest: Any, where: str) -> None:
    """Raise a one-line :class:`RunDirError` naming the first bad field of a manifest."""
    if not isinstance(manifest, dict):
        raise RunDirError(f"damaged manifest {where}: expected a JSON object")
    try:
        ManifestSchema.model_validate(manifest)
    except ValidationError as exc:
        raise RunDirError(
            f"damaged manifest {where}: {first_problem(exc)}; the run directory cannot be trusted"
        ) from None
