"""The embedded llama.cpp provider ("local")."""
