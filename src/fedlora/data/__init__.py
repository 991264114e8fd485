"""Tasks, tokenisation and partitioning of data across clients."""
