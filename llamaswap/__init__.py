"""llamaswap: one OpenAI-compatible endpoint that swaps local LLM servers on demand."""

__version__ = "0.1.0"
