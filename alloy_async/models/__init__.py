"""The models: frozen attrs classes, one module per resource, snake_case field names.

Every model keeps the response keys it does not know in ``extra`` (read-only), so nothing the
API adds is lost. Models do no I/O and do not import cattrs: ``alloy_async._convert`` builds them.
"""

from .actions import Action, CatalogAction, ExecutionResult
from .bulk import BulkReport, ExecuteJob, JobOutcome
from .connectors import ActionSummary, Connector, Resource
from .credentials import Credential, CredentialCreated, CredentialMetadata
from .files import StoredFile, UploadTarget
from .users import User

__all__ = [
    "Action",
    "ActionSummary",
    "BulkReport",
    "CatalogAction",
    "Connector",
    "Credential",
    "CredentialCreated",
    "CredentialMetadata",
    "ExecuteJob",
    "ExecutionResult",
    "JobOutcome",
    "Resource",
    "StoredFile",
    "UploadTarget",
    "User",
]
