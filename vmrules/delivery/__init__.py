"""How rows reach their places safely: staged parts and spills, the commit (atomic renames, the incremental
state and its journal), the run lock, scratch files of killed runs."""
