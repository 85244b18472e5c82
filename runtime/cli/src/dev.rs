//! `outpost dev`: build the project, serve it with the node's own code
//! (the same `Node`, runtime, limits and router as `outpost serve`), and on
//! every source change rebuild and swap the new version in. A failed build
//! keeps the last good version serving.

use crate::project::Project;
use crate::serve::{default_cache_dir, shutdown_signal};
use crate::style::{self, out};
use outpost_core::Limits;
use outpost_server::{AppConfig, AppManifest, AppTable, Node, NodeConfig, Origin, Served};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often sources are checked for changes.
const POLL: Duration = Duration::from_millis(250);

/// Changes are picked up once the sources have been quiet this long, so an
/// editor saving several files triggers one build.
const DEBOUNCE: Duration = Duration::from_millis(300);

#[derive(clap::Args)]
pub(crate) struct DevArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Lets outbound requests reach this private range (CIDR, e.g.
    /// 127.0.0.0/8 for origins on this machine); repeatable. As in
    /// production, nothing private is reachable otherwise.
    #[arg(long, value_name = "CIDR", value_parser = crate::serve::parse_range)]
    allow_private: Vec<outpost_host::fetch::PrivateAllowance>,
    /// Serve without the edge cache in front of the handler, whatever the
    /// manifest's [cache] says (the handler's own cache calls still work).
    #[arg(long)]
    no_cache: bool,
}

pub(crate) fn run(args: &DevArgs) -> anyhow::Result<()> {
    let project = Project::open(&args.dir)?;
    // The dev server is a node with the default maxima, like production.
    let maxima = Limits::node_maxima();
    // The sources as they are before the first build: a file saved while
    // it runs, or before the watcher starts, is a change.
    let built_from = snapshot(&project.dir);
    let mut manifest = project.manifest(&maxima)?;
    if args.no_cache {
        manifest.cache.in_front = false;
    }
    let component = project.build()?;
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    // KV data stays with the project (.outpost/ is gitignored by `outpost
    // new`), apart from any node's.
    let kv_path = project.dir.join(".outpost").join("kv.redb");
    let mut config = NodeConfig::single(component.clone(), listen, default_cache_dir()?, kv_path);
    config.apps = vec![AppConfig {
        component,
        manifest: manifest.clone(),
    }];
    for range in &args.allow_private {
        config.outbound.allow_private.extend(range.clone());
    }
    let node = Node::start(config, 1)?;
    let vars = node.runtime().services().vars.clone();
    vars.set_secrets(&manifest.name, local_secrets(&project.dir)?);
    // The same first line as `outpost serve`: scripts wait for it.
    out!("listening on http://{}", node.local_addr());
    out!(
        "{} {} {}",
        style::ok("serving"),
        style::bold(&manifest.name),
        style::dim("(rebuilds on change; Ctrl-C to stop)")
    );
    let reloader = Reloader {
        project,
        table: node.table(),
        runtime: node.runtime(),
        name: manifest.name,
        no_cache: args.no_cache,
    };
    std::thread::Builder::new()
        .name("outpost-dev-watch".into())
        .spawn(move || reloader.watch(built_from))?;
    node.run(shutdown_signal())
}

struct Reloader {
    project: Project,
    table: Arc<AppTable>,
    runtime: Arc<outpost_core::Runtime>,
    /// The app's name as served now (the manifest may rename it).
    name: outpost_store::AppName,
    /// `--no-cache`.
    no_cache: bool,
}

impl Reloader {
    /// Rebuilds whenever the sources differ from `seen`, the snapshot the
    /// serving version was built from.
    fn watch(mut self, mut seen: BTreeMap<PathBuf, (SystemTime, u64)>) {
        // The build's own output is not in the snapshot (target/, and
        // Cargo.lock, which cargo rewrites), so a build never triggers
        // another one; what was saved during a build triggers the next.
        loop {
            std::thread::sleep(POLL);
            let mut now = snapshot(&self.project.dir);
            if now == seen {
                continue;
            }
            // Debounce: wait until the tree stops changing.
            loop {
                std::thread::sleep(DEBOUNCE);
                let later = snapshot(&self.project.dir);
                if later == now {
                    break;
                }
                now = later;
            }
            self.reload();
            seen = now;
        }
    }

    fn reload(&mut self) {
        let started = Instant::now();
        match self.rebuild() {
            Ok(()) => {
                out!(
                    "{} {} in {:.1} s",
                    style::ok("reloaded"),
                    style::bold(&self.name),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(err) => {
                eprintln!("{} {err:#}", style::error("error:"));
                eprintln!("{}", style::warn("still serving the last good version"));
            }
        }
    }

    fn rebuild(&mut self) -> anyhow::Result<()> {
        let mut manifest: AppManifest = self.project.manifest(&Limits::node_maxima())?;
        if self.no_cache {
            manifest.cache.in_front = false;
        }
        let secrets = local_secrets(&self.project.dir)?;
        let component = self.project.build()?;
        self.runtime
            .services()
            .vars
            .set_secrets(&manifest.name, secrets);
        let (app, _) = self.runtime.load_app(&manifest.spec(component))?;
        // A node keeps an app's cache across deploys; while developing,
        // the new code's answers are what one wants to see.
        let all = outpost_host::cache::Purge {
            all: true,
            ..Default::default()
        };
        app.cache()
            .purge(&all)
            .map_err(|err| anyhow::anyhow!(err))?;
        let served = Served {
            app,
            routes: manifest.routes,
            version: None,
            origin: Origin::Config,
        };
        // A renamed app replaces the old name in the same swap.
        self.table
            .replace(&self.name, served)
            .map_err(|conflict| anyhow::anyhow!(conflict))?;
        self.name = manifest.name;
        Ok(())
    }
}

/// The file of local secrets `outpost dev` serves, in the project
/// directory: `NAME = "value"` lines, kept out of version control (`outpost
/// new` puts it in .gitignore). What `outpost secret put` holds on a node.
const SECRETS_FILE: &str = ".secrets.toml";

/// The secrets of `DIR/.secrets.toml`, none if there is no such file.
fn local_secrets(dir: &Path) -> anyhow::Result<outpost_host::vars::Secrets> {
    let path = dir.join(SECRETS_FILE);
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(err) => anyhow::bail!("{}: cannot read: {err}", path.display()),
    };
    let line = |offset: usize| source[..offset].matches('\n').count() + 1;
    let table: BTreeMap<String, toml::Spanned<String>> =
        toml::from_str(&source).map_err(|err| {
            let at = err
                .span()
                .map(|span| format!(":{}", line(span.start)))
                .unwrap_or_default();
            crate::exit::usage(format!(
                "{}{at}: {} (write one `name = \"value\"` per line)",
                path.display(),
                err.message().trim()
            ))
        })?;
    let mut secrets = outpost_host::vars::Secrets::new();
    for (name, value) in table {
        outpost_store::VarName::parse(&name).map_err(|err| {
            crate::exit::usage(format!(
                "{}:{}: {err}",
                path.display(),
                line(value.span().start)
            ))
        })?;
        secrets.insert(name, outpost_host::vars::Secret::new(value.get_ref()));
    }
    Ok(secrets)
}

/// Modification time and size of every file of the project, except build
/// output (`target/`, `Cargo.lock`) and hidden directories (`.git`); the
/// local secrets file is one of them.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == "target"
                || name == "Cargo.lock"
                || (name.starts_with('.') && name != SECRETS_FILE)
            {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if let Ok(modified) = metadata.modified() {
                files.insert(entry.path(), (modified, metadata.len()));
            }
        }
    }
    files
}
