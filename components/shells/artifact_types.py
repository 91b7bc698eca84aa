"""The project's own KFP artifact types, in one module (the Google Cloud Pipeline Components way).

KFP imports a custom artifact type into every task whose signature names it (``from <module>
import <type>``), so they live here, apart from the shells: such a task imports kfp and this file.
The ``google.*`` schema titles are what the Vertex console links to the Model Registry / endpoint.
"""

from kfp.dsl import Artifact


class VertexModel(Artifact):
    """A Vertex AI Model Registry version (metadata ``resourceName``): the console links to it."""

    schema_title = "google.VertexModel"
    schema_version = "0.0.1"


class VertexEndpoint(Artifact):
    """A Vertex AI endpoint (metadata ``resourceName``): the console links to it."""

    schema_title = "google.VertexEndpoint"
    schema_version = "0.0.1"
