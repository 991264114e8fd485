"""Loading base models and tokenizers by alias, hub name or local directory."""
