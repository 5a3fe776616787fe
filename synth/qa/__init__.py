"""QA synthesis: template QA from exact ground truth (``template``), and model QA with
rejection sampling against any OpenAI-compatible server (``client``, ``verify``, ``generate``)."""
