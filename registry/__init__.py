"""The registry (issue 3): datasets, versions, runs and lineage; REST API and web registry."""
