"""The RARLJob API types, their validation and the CRD generated from them."""

from rarl.api.types import (
    API_GROUP,
    API_VERSION,
    GROUP_VERSION,
    KIND,
    PLURAL,
    Condition,
    RARLJob,
    RARLJobSpec,
    RARLJobStatus,
)
from rarl.api.validation import load_yaml_documents, parse_job, validate_document
from rarl.api.vocabulary import PHASES, TERMINAL_PHASES, Phase

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "KIND",
    "PHASES",
    "PLURAL",
    "TERMINAL_PHASES",
    "Condition",
    "Phase",
    "RARLJob",
    "RARLJobSpec",
    "RARLJobStatus",
    "load_yaml_documents",
    "parse_job",
    "validate_document",
]
