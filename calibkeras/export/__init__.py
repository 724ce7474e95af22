"""SavedModel export for TF Serving, and its verification with TF Serving's loader."""

from calibkeras.export.saved_model import SIGNATURE_NAMES, export_saved_model
from calibkeras.export.serving_session import ServingSession
from calibkeras.export.verify import (
    SavedModelVerificationError,
    read_export_metadata,
    verify_saved_model,
)
from calibkeras.utils.deprecation import deprecated_names

__all__ = [
    "SIGNATURE_NAMES",
    "SavedModelVerificationError",
    "ServingSession",
    "export_saved_model",
    "read_export_metadata",
    "verify_saved_model",
]

__getattr__ = deprecated_names(__name__, {
    "METADATA_COLLECTIONS": "calibkeras.export.saved_model:METADATA_COLLECTIONS",
    "find_version_dir": "calibkeras.export.serving_session:find_version_dir",
})
