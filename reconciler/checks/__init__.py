"""The JSON Schemas' fast checks, generated ahead of time (``reconciler.schemas``).

fastjsonschema turns a schema into Python source; compiling that source at run time cost
``validate`` about a third of its start-up. Each module here is that source, generated from
the schema in ``schemas/`` and installed (and byte-compiled) with the package. Each names
the digest of the schema it was generated from: ``reconciler.schemas`` uses a module only
when that digest is the digest of the schema it loads, and compiles the schema itself
otherwise (a development checkout whose schema was edited), so a check never answers for
another schema. ``tests/test_schema_checks.py`` fails while a module is stale;
``python3 dev.py test tests/test_schema_checks.py --update-golden`` writes them again.
"""
