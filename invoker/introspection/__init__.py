"""SQL introspection: Restate's system tables (``sys_invocation``, ``sys_journal``, ``state``, …)
answered by Apache DataFusion over Arrow data read from the store.

Read-only: nothing here writes to the backend. The parts:

* :mod:`invoker.introspection.source` reads records (no Arrow, no DataFusion), counting every
  item against a per-query budget;
* :mod:`invoker.introspection.rows`, :mod:`~invoker.introspection.journal_rows` and
  :mod:`~invoker.introspection.keyed_rows` turn records into rows with Restate's column names;
* :mod:`invoker.introspection.schema` holds the Arrow schemas (restate-server 1.7.12's);
* :mod:`invoker.introspection.pushdown` finds the equalities a query's plan puts on each table;
* :mod:`invoker.introspection.query` plans with DataFusion, reads what the filters allow, runs.

Only the query path imports ``pyarrow`` and ``datafusion`` (the ``sql`` extra); importing this
package imports neither.
"""
