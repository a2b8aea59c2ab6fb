"""The only package that imports google-genai."""
