"""The rule files, from YAML to the model: load (with positions) -> schema -> checks per file -> validate
across files; the schema's reference docs and the rule tests' value notation."""
