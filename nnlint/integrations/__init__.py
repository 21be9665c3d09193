"""Integrations with training frameworks (Lightning, Hugging Face); each imports its library lazily."""
