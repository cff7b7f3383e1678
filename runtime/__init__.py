"""What runs Prefect and MLflow for orca, locally and remotely.

- state.py: the state directory (Prefect home, MLflow store, artifacts, caches) and the
  PREFECT_* / MLFLOW_* settings that point at it;
- state_server.py, prefect_api.py: the Prefect API server that the commands on one state
  directory share;
- prefect_db.py, mlflow_db.py: migrated empty databases that new state directories copy;
- team_db.py: team mode (ORCA_DATABASE_URL), Prefect's and MLflow's databases as two
  schemas of one PostgreSQL database;
- runners.py, dask_cluster.py: the task runners a sweep's runs go to (threads, processes,
  Dask);
- locks.py: the cache-key locks every process of a state directory shares;
- remote_io.py: Prefect's remote filesystem block with retries for transient errors;
- versions.py: the Prefect and MLflow releases this code is tested on.

Every use of a Prefect or MLflow API that is not public is in this package, and only here:
- prefect.server.api.server.SubprocessASGIServer (prefect_api.py) and create_app
  (state_server.py): running Prefect's own local API server;
- prefect.server.database.dependencies.set_database_config and
  prefect.server.database.configurations.AioSqliteConfiguration (prefect_db.py): SQLite
  transactions that take their lock at BEGIN;
- prefect.settings.profiles.load_current_profile (prefect_api.py): whether the user set
  heartbeats in their profile;
- prefect.context.refresh_global_settings_context (prefect_api.py): the process-wide
  settings that new threads get, rebuilt once PREFECT_API_URL is set;
- prefect.flow_engine.run_flow (prefect_api.py): running an existing flow run again in this
  process (`orca retry`);
- the `_sync` argument of Prefect's sync/async dispatching methods (prefect_api.py
  `default_result_storage`, remote_io.py), and FileSystemLockManager's lock-file layout,
  which locks.py extends;
- mlflow.store.tracking.sqlalchemy_store.SqlAlchemyStore (mlflow_db.py): creating a
  migrated MLflow database, and migrating a team database with the Default experiment's
  artifacts in the state directory.

Importing this package checks that the installed Prefect and MLflow are the tested minor
releases (versions.py), so an unsupported one fails at start with a clear message.
"""

from runtime.versions import check_supported

check_supported()
