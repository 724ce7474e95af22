"""SavedModel export for TF Serving, and its verification with TF Serving's loader."""

from calibkeras.export.saved_model import (
    METADATA_COLLECTIONS,
    SIGNATURE_NAMES,
    export_saved_model,
)
from calibkeras.export.serving_session import ServingSession, find_version_dir
from calibkeras.export.verify import (
    SavedModelVerificationError,
    read_export_metadata,
    verify_saved_model,
)

__all__ = [
    "METADATA_COLLECTIONS",
    "SIGNATURE_NAMES",
    "SavedModelVerificationError",
    "ServingSession",
    "export_saved_model",
    "find_version_dir",
    "read_export_metadata",
    "verify_saved_model",
]
