"""OpenAI's Files and Vector Stores API over the core (``services/openai_stores.py``)."""
