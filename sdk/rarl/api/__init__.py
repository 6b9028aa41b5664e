"""The RARLJob API types, their validation and the CRD generated from them."""

from rarl.api.types import (
    API_GROUP,
    API_VERSION,
    GROUP_VERSION,
    KIND,
    PLURAL,
    TERMINAL_PHASES,
    Condition,
    RARLJob,
    RARLJobSpec,
    RARLJobStatus,
)
from rarl.api.validation import load_yaml_documents, parse_job, validate_document

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "KIND",
    "PLURAL",
    "TERMINAL_PHASES",
    "Condition",
    "RARLJob",
    "RARLJobSpec",
    "RARLJobStatus",
    "load_yaml_documents",
    "parse_job",
    "validate_document",
]
