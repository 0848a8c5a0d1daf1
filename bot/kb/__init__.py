"""The knowledge base: sources -> documents -> chunks -> embeddings -> one LanceDB table."""
