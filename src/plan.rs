//! SQL -> DataFusion `LogicalPlan`, with every relation's schema known before
//! any data is read.
//!
//! One [`Engine`] (a DataFusion `SessionContext`) holds every relation a model
//! can name: sources as Parquet listing tables (`"source"."table"`), views and
//! ephemeral models as inlined `ViewTable`s, and stored models as either a
//! typed placeholder (while compiling) or their Delta table (while running).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemorySchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::ViewTable;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, SessionState, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};

use deltalake::delta_datafusion::planner::DeltaPlanner;

use crate::diagnostic::{Diagnostic, line_col};

/// What an engine can do beyond planning and running SQL: the in-process
/// shortcuts the build planner uses where they exist. A remote engine (a
/// cluster) offers none, and the plan does without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Hold a checked view's rows in memory (or local spill files) for the run.
    pub stage_views: bool,
    /// Count duplicated keys in a write's or a staged view's stream as rows pass.
    pub count_keys: bool,
    /// Prove a check's verdict from Parquet footers before any scan.
    pub footers: bool,
}

impl Capabilities {
    /// The in-process DataFusion session: everything.
    pub const IN_PROCESS: Capabilities = Capabilities { stage_views: true, count_keys: true, footers: true };

    pub fn describe(&self) -> String {
        let named = [
            (self.stage_views, "staged views"),
            (self.count_keys, "keys counted in streams"),
            (self.footers, "footer proofs"),
        ];
        let on: Vec<&str> = named.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        if on.is_empty() { "plain SQL".into() } else { format!("in process ({})", on.join(", ")) }
    }
}

/// The runtime session, behind the few things the stages ask of it: make a
/// relation resolvable (for the run, or for one step: [`Registration`]),
/// plan SQL, run SQL or a plan into batches or streams, and hand a copy of
/// its state to the writers that plan physically (Delta writes, staging).
/// What it can do beyond that is in its [`Capabilities`].
pub struct Engine {
    ctx: SessionContext,
    /// The target's store options (credentials), for every store it reaches.
    pub storage: crate::storage::StorageOptions,
}

/// A relation registered for one step: dropped (no longer resolvable) when
/// the registration is.
#[must_use = "the relation is dropped with its registration"]
pub struct Registration<'a> {
    engine: &'a Engine,
    name: String,
}

impl Registration<'_> {
    /// The name SQL reads it by.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.engine.deregister(&self.name);
    }
}

impl Engine {
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::IN_PROCESS
    }

    /// A copy of the session's state (its catalog is shared): for planning
    /// physically, or with options changed for one query.
    pub fn state(&self) -> SessionState {
        self.ctx.state()
    }

    pub fn task_ctx(&self) -> Arc<TaskContext> {
        self.ctx.task_ctx()
    }

    /// Run `sql` to the end: its batches.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, DataFusionError> {
        self.ctx.sql(sql).await?.collect().await
    }

    /// Run `sql` as one stream per output partition, with its schema.
    pub async fn sql_partitioned(
        &self,
        sql: &str,
    ) -> Result<(SchemaRef, Vec<SendableRecordBatchStream>), DataFusionError> {
        let df = self.ctx.sql(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok((schema, df.execute_stream_partitioned().await?))
    }

    /// The physical plan of `sql`, optimized, not run.
    pub async fn physical_plan(&self, sql: &str) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        self.ctx.sql(sql).await?.create_physical_plan().await
    }

    /// A plan that yields `batches` (rows already in memory).
    pub fn batches_plan(&self, batches: Vec<RecordBatch>) -> Result<LogicalPlan, DataFusionError> {
        Ok(self.ctx.read_batches(batches)?.into_unoptimized_plan())
    }

    /// Write `batches` as one Parquet file at `url`.
    pub async fn write_parquet_file(
        &self,
        batches: Vec<RecordBatch>,
        url: &str,
    ) -> Result<(), DataFusionError> {
        let options = datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true);
        self.ctx.read_batches(batches)?.write_parquet(url, options, None).await?;
        Ok(())
    }

    /// The session itself, for tests that set up data with SQL.
    #[cfg(test)]
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn new(target_partitions: usize) -> Self {
        Self::with_storage(target_partitions, Default::default())
    }

    pub fn with_storage(target_partitions: usize, storage: crate::storage::StorageOptions) -> Self {
        crate::storage::register_delta_schemes();
        let mut config = SessionConfig::new()
            .with_target_partitions(target_partitions.max(1))
            .with_information_schema(true);
        config.options_mut().sql_parser.collect_spans = true;
        // delta-rs' planner executes its own write nodes and defers everything else.
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_query_planner(DeltaPlanner::new())
            .build();
        Engine { ctx: SessionContext::new_with_state(state), storage }
    }

    /// Register a source table: Parquet files at `url` (folder, file or glob),
    /// typed by `declared` columns when every column is declared, else by the
    /// files' footers (with declared types overriding inferred ones).
    pub async fn register_source(
        &self,
        source: &str,
        table: &str,
        url: &str,
        declared: &[(String, DataType)],
        all_declared: bool,
    ) -> Result<SchemaRef, DataFusionError> {
        let table_url = ListingTableUrl::parse(url)?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let state = self.ctx.state();
        let schema = if all_declared && !declared.is_empty() {
            Arc::new(Schema::new(
                declared.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>(),
            ))
        } else {
            let inferred = options.infer_schema(&state, &table_url).await?;
            let fields: Vec<Field> = inferred
                .fields()
                .iter()
                .map(|f| match declared.iter().find(|(n, _)| n == f.name()) {
                    Some((_, t)) => Field::new(f.name(), t.clone(), true),
                    None => Field::new(f.name(), utc_timestamps(f.data_type()), true),
                })
                .collect();
            Arc::new(Schema::new(fields))
        };
        let provider = parquet_table(table_url, schema.clone())?;
        self.ensure_schema(source)?;
        self.ctx.register_table(TableReference::partial(source, table), Arc::new(provider))?;
        Ok(schema)
    }

    /// Whether `url` (folder, file or glob) holds at least one `.parquet` file.
    pub async fn has_files(&self, url: &str) -> Result<bool, DataFusionError> {
        use futures::StreamExt;
        let table_url = ListingTableUrl::parse(url)?;
        let store = self.ctx.runtime_env().object_store(&table_url)?;
        let state = self.ctx.state();
        let mut files = table_url.list_all_files(&state, store.as_ref(), ".parquet").await?;
        match files.next().await {
            None => Ok(false),
            Some(first) => first.map(|_| true),
        }
    }

    /// The `.parquet` files under `url`, in name order.
    async fn files(&self, url: &str) -> Result<Vec<String>, DataFusionError> {
        use futures::TryStreamExt;
        let table_url = ListingTableUrl::parse(url)?;
        let store = self.ctx.runtime_env().object_store(&table_url)?;
        let state = self.ctx.state();
        let metas: Vec<_> =
            table_url.list_all_files(&state, store.as_ref(), ".parquet").await?.try_collect().await?;
        let root = &url[..url::Url::parse(url).map(|u| u[..url::Position::BeforePath].len()).unwrap_or(0)];
        let mut files: Vec<String> = metas.iter().map(|m| format!("{root}/{}", m.location)).collect();
        files.sort();
        Ok(files)
    }

    /// The first file under `url` whose footer cannot be read, and why: a
    /// source's schema is inferred from every footer at once, and that error
    /// names no file.
    pub async fn unreadable_footer(&self, url: &str) -> Option<(String, String)> {
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let state = self.ctx.state();
        for file in self.files(url).await.ok()? {
            let Ok(file_url) = ListingTableUrl::parse(&file) else { continue };
            if let Err(e) = options.infer_schema(&state, &file_url).await {
                return Some((file, clean_message(&e)));
            }
        }
        None
    }

    /// The first file under `url` that cannot be read whole as `schema`
    /// (damaged pages, a bad checksum, a value the declared type cannot
    /// hold), and why. Reads every file until one fails: only for
    /// explaining a failure, never on the way to success.
    pub async fn unreadable_file(&self, url: &str, schema: &Schema) -> Option<(String, String)> {
        use futures::StreamExt;
        for file in self.files(url).await.ok()? {
            let options = datafusion::prelude::ParquetReadOptions::default().schema(schema);
            let result = async {
                let mut stream =
                    self.ctx.read_parquet(file.as_str(), options).await?.execute_stream().await?;
                while let Some(batch) = stream.next().await {
                    batch?;
                }
                Ok::<(), DataFusionError>(())
            }
            .await;
            if let Err(e) = result {
                return Some((file, clean_message(&e)));
            }
        }
        None
    }

    fn ensure_schema(&self, name: &str) -> Result<(), DataFusionError> {
        let catalog = self
            .ctx
            .catalog("datafusion")
            .ok_or_else(|| DataFusionError::Internal("no default catalog".into()))?;
        if catalog.schema(name).is_none() {
            catalog.register_schema(name, Arc::new(MemorySchemaProvider::new()))?;
        }
        Ok(())
    }

    /// Plan one model's SQL: parse, resolve names and type-check (DataFusion's
    /// analyzer: type coercion and plan checks). Not optimized: the optimizer
    /// runs once, when the plan executes, over the plan with its inlined views.
    pub async fn plan_sql(&self, sql: &str) -> Result<LogicalPlan, DataFusionError> {
        plan_sql_in(&self.ctx.state(), sql).await
    }

    /// A CSV seed's plan: header row, declared `column_types` over inferred types.
    pub async fn seed_plan(
        &self,
        path: &str,
        overrides: &[(String, DataType)],
        delimiter: u8,
    ) -> Result<LogicalPlan, DataFusionError> {
        let opts = CsvReadOptions::new().has_header(true).delimiter(delimiter).file_extension(".csv");
        let df = self.ctx.read_csv(path, opts.clone()).await?;
        if overrides.is_empty() {
            return Ok(df.into_unoptimized_plan());
        }
        let fields: Vec<Field> = df
            .schema()
            .fields()
            .iter()
            .map(|f| match overrides.iter().find(|(n, _)| n == f.name()) {
                Some((_, t)) => Field::new(f.name(), t.clone(), true),
                None => f.as_ref().clone(),
            })
            .collect();
        let schema = Schema::new(fields);
        let df = self.ctx.read_csv(path, opts.schema(&schema)).await?;
        Ok(df.into_unoptimized_plan())
    }

    /// Make `name` resolvable with `schema` but no data (compile time).
    pub fn register_placeholder(&self, name: &str, schema: SchemaRef) -> Result<(), DataFusionError> {
        self.register(name, Arc::new(EmptyTable::new(schema)))
    }

    /// Make `name` resolve to `plan`, inlined wherever it is referenced.
    pub fn register_view(&self, name: &str, plan: LogicalPlan, sql: &str) -> Result<(), DataFusionError> {
        self.register(name, Arc::new(ViewTable::new(plan, Some(sql.to_string()))))
    }

    /// Make `name` resolve to exactly these Parquet files (staged, not yet
    /// published data) while the registration lives; `schema` types it when
    /// there are none.
    pub async fn register_files_for_step(
        &self,
        name: &str,
        files: &[url::Url],
        schema: SchemaRef,
    ) -> Result<Registration<'_>, DataFusionError> {
        self.register_files(name, files, schema).await?;
        Ok(Registration { engine: self, name: name.to_string() })
    }

    async fn register_files(
        &self,
        name: &str,
        files: &[url::Url],
        schema: SchemaRef,
    ) -> Result<(), DataFusionError> {
        if files.is_empty() {
            return self.register_placeholder(name, schema);
        }
        let urls = files.iter().map(|u| ListingTableUrl::parse(u.as_str())).collect::<Result<Vec<_>, _>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .infer_schema(&self.ctx.state())
            .await?;
        self.register(name, Arc::new(ListingTable::try_new(config)?))
    }

    /// Make `url`'s store (its bucket) reachable from SQL; local disk always is.
    pub fn register_store(&self, url: &url::Url) -> Result<(), crate::storage::StoreError> {
        if url.scheme() == "file" {
            return Ok(());
        }
        let store = crate::storage::store_for(url, &self.storage)?;
        self.ctx.register_object_store(&crate::storage::store_root(url), store);
        Ok(())
    }

    /// The object store DataFusion reads `url` from (scheme and host).
    pub fn registered_store(
        &self,
        url: &url::Url,
    ) -> Result<Arc<dyn object_store::ObjectStore>, DataFusionError> {
        let root =
            datafusion::execution::object_store::ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?;
        self.ctx.runtime_env().object_store(root)
    }

    pub fn deregister(&self, name: &str) {
        let _ = self.ctx.deregister_table(TableReference::bare(name));
    }

    pub fn register(&self, name: &str, provider: Arc<dyn TableProvider>) -> Result<(), DataFusionError> {
        let reference = TableReference::bare(name);
        self.ctx.deregister_table(reference.clone())?;
        self.ctx.register_table(reference, provider)?;
        Ok(())
    }
}

/// [`Engine::plan_sql`] in a given session state: cloning the state copies
/// every function registry, which cost 7% of compiling 2,000 models when done
/// per model, so each planning worker clones it once.
pub async fn plan_sql_in(state: &SessionState, sql: &str) -> Result<LogicalPlan, DataFusionError> {
    use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
    use datafusion::sql::sqlparser::ast::Statement;
    let single_select =
        || DataFusionError::Plan("a model must be a single SELECT (or WITH ... SELECT) query".into());
    let mut statements = {
        // The dialect is not `Send`: dropped before the plan is awaited.
        let name = state.config_options().sql_parser.dialect;
        let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(name)
            .ok_or_else(|| DataFusionError::Plan(format!("unsupported SQL dialect {name}")))?;
        DFParserBuilder::new(sql)
            .with_dialect(dialect.as_ref())
            .with_recursion_limit(state.config_options().sql_parser.recursion_limit.get())
            .build()?
            .parse_statements()?
    };
    // Checked on the parsed statement, before any name is resolved: a DDL
    // or DML statement is refused as such, not for a table it names.
    let statement = match (statements.pop_front(), statements.len()) {
        (None, _) => {
            return Err(DataFusionError::Plan(
                "the model is empty: it renders to no SQL statement; a model is one SELECT query".into(),
            ));
        }
        (Some(_), n) if n > 0 => {
            return Err(DataFusionError::Plan(format!(
                "the model has {} SQL statements; a model is one SELECT query (remove the `;` and what follows it)",
                n + 1
            )));
        }
        (Some(s @ DFStatement::Statement(_)), _) if matches!(&s, DFStatement::Statement(b) if matches!(**b, Statement::Query(_))) => {
            s
        }
        (Some(_), _) => return Err(single_select()),
    };
    let plan = state.statement_to_plan(statement).await?;
    match &plan {
        LogicalPlan::Ddl(_)
        | LogicalPlan::Dml(_)
        | LogicalPlan::Copy(_)
        | LogicalPlan::Statement(_)
        | LogicalPlan::DescribeTable(_)
        | LogicalPlan::Explain(_) => {
            return Err(single_select());
        }
        _ => {}
    }
    // Type coercion and checks happen in the analyzer: run it now so a type
    // error surfaces at compile time, not halfway through a run.
    state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    Ok(plan)
}

/// The `.parquet` files under `url` (folder, file or glob), read as `schema`.
pub fn parquet_table(url: ListingTableUrl, schema: SchemaRef) -> Result<ListingTable, DataFusionError> {
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    ListingTable::try_new(ListingTableConfig::new(url).with_listing_options(options).with_schema(schema))
}

/// Source timestamps are UTC instants whether the file marks them adjusted or not.
fn utc_timestamps(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, Some("UTC".into())),
        other => other.clone(),
    }
}

/// Parse a declared column type (`varchar`, `decimal(18,2)`, `timestamp`...).
pub fn parse_type(s: &str) -> Option<DataType> {
    let t = s.trim().to_ascii_lowercase();
    let (base, args) = match t.split_once('(') {
        Some((b, rest)) => (b.trim().to_string(), Some(rest.trim_end_matches(')').to_string())),
        None => (t.clone(), None),
    };
    Some(match base.as_str() {
        "string" | "varchar" | "text" | "char" | "utf8" | "character varying" => DataType::Utf8,
        "boolean" | "bool" => DataType::Boolean,
        "tinyint" | "int1" => DataType::Int8,
        "smallint" | "int2" => DataType::Int16,
        "int" | "integer" | "int4" | "int32" => DataType::Int32,
        "bigint" | "int8" | "int64" | "long" => DataType::Int64,
        "float" | "real" | "float4" | "float32" => DataType::Float32,
        "double" | "float8" | "float64" | "double precision" => DataType::Float64,
        "date" => DataType::Date32,
        "timestamp" | "timestamptz" | "timestamp with time zone" | "timestamp_ntz" | "datetime" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        "decimal" | "numeric" => {
            let (p, s) = match args.as_deref().map(|a| a.split(',').map(str::trim).collect::<Vec<_>>()) {
                Some(v) if v.len() == 2 => (v[0].parse().ok()?, v[1].parse().ok()?),
                Some(v) if v.len() == 1 => (v[0].parse().ok()?, 0),
                None => (38, 10),
                _ => return None,
            };
            if !(1..=38).contains(&p) || s > p {
                return None;
            }
            DataType::Decimal128(p, s as i8)
        }
        _ => return None,
    })
}

/// Point a DataFusion error at the model file the user wrote.
///
/// DataFusion reports positions in the *rendered* SQL; Jinja keeps most lines
/// where they were, so we look for the offending token on that line of the
/// source first, then anywhere in the source.
pub fn sql_diagnostic(
    file: &std::path::Path,
    source: &str,
    rendered: &str,
    err: &DataFusionError,
    compiled_path: &str,
) -> Diagnostic {
    let message = clean_message(err);
    let rendered_pos = err
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| {
            (
                s.start.line as usize,
                s.start.column as usize,
                s.end.column.saturating_sub(s.start.column) as usize,
            )
        })
        .or_else(|| parser_position(&message).map(|(l, c)| (l, c, 0)));
    let token = rendered_pos
        .and_then(|(l, c, len)| {
            let line = rendered.lines().nth(l.checked_sub(1)?)?;
            let tok: String =
                line.chars().skip(c.saturating_sub(1)).take(if len > 0 { len } else { usize::MAX }).collect();
            let tok = if len > 0 {
                tok
            } else {
                tok.split(|ch: char| !ch.is_alphanumeric() && ch != '_').next()?.to_string()
            };
            Some(tok).filter(|t| !t.is_empty())
        })
        .or_else(|| quoted_name(&message));
    let found = token.as_deref().and_then(|tok| find_token(source, tok, rendered_pos.map(|p| p.0)));
    let d = Diagnostic::error(message).with_help(format!("the rendered SQL is in {compiled_path}"));
    match (found, rendered_pos) {
        (Some((line, col, len)), _) => d.at(file, line, col).with_span_len(len),
        (None, Some((line, col, _))) => d.at(file, line, col),
        (None, None) => d.in_file(file),
    }
}

pub fn clean_message(err: &DataFusionError) -> String {
    let mut msg = err.to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "Optimizer rule 'type_coercion' failed\ncaused by\n",
        "type_coercion\ncaused by\n",
    ] {
        msg = msg.replace(prefix, "");
    }
    msg.trim().to_string()
}

/// sqlparser's "... at Line: 3, Column: 8".
fn parser_position(msg: &str) -> Option<(usize, usize)> {
    let i = msg.find("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

/// The first `name` in backquotes or single/double quotes of an error message.
fn quoted_name(msg: &str) -> Option<String> {
    for (open, close) in [("No field named ", "."), ("'", "'"), ("\"", "\"")] {
        if let Some(i) = msg.find(open) {
            let rest = &msg[i + open.len()..];
            let name: String = rest.split(close).next()?.trim_matches(['"', '\'']).to_string();
            let name = name.rsplit('.').next().unwrap_or(&name).to_string();
            if !name.is_empty() && name.len() < 64 && !name.contains(' ') {
                return Some(name);
            }
        }
    }
    None
}

/// (line, column, length) of `token` in `source`, preferring `near_line`.
fn find_token(source: &str, token: &str, near_line: Option<usize>) -> Option<(usize, usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let bytes = source.as_bytes();
    let mut from = 0;
    while let Some(pos) = source[from..].find(token).map(|p| p + from) {
        from = pos + token.len().max(1);
        let before_ok = pos == 0 || !is_ident(bytes[pos - 1]);
        let after = pos + token.len();
        let after_ok = after >= bytes.len() || !is_ident(bytes[after]);
        if !(before_ok && after_ok) {
            continue;
        }
        let (line, _) = line_col(source, pos);
        let distance = near_line.map_or(0, |n| line.abs_diff(n));
        if best.is_none_or(|(_, d)| distance < d) {
            best = Some((pos, distance));
        }
    }
    best.map(|(pos, _)| {
        let (l, c) = line_col(source, pos);
        (l, c, token.chars().count())
    })
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types() {
        assert_eq!(parse_type("DECIMAL(18, 2)"), Some(DataType::Decimal128(18, 2)));
        assert_eq!(parse_type("varchar"), Some(DataType::Utf8));
        assert_eq!(
            parse_type("timestamp"),
            Some(DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))
        );
        assert_eq!(parse_type("blob"), None);
    }

    #[tokio::test]
    async fn unknown_column_points_at_the_source_line() {
        let engine = Engine::new(1);
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        engine.register_placeholder("t", schema).unwrap();
        let source = "{{ config(materialized='table') }}\nselect a,\n  bogus\nfrom {{ ref('t') }}";
        let rendered = "\nselect a,\n  bogus\nfrom \"t\"";
        let err = engine.plan_sql(rendered).await.unwrap_err();
        let d = sql_diagnostic(
            std::path::Path::new("models/m.sql"),
            source,
            rendered,
            &err,
            "target/compiled/models/m.sql",
        );
        let loc = d.location.unwrap();
        assert_eq!((loc.line, loc.column), (3, 3), "{}", d.message);
        assert!(d.message.contains("bogus"), "{}", d.message);
    }

    #[tokio::test]
    async fn type_errors_are_caught_when_planning() {
        let engine = Engine::new(1);
        let err = engine.plan_sql("select 'abc' - interval '1 day' * true").await;
        assert!(err.is_err());
    }
}
