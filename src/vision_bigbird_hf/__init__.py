"""Vision Big Bird for Hugging Face Transformers."""
