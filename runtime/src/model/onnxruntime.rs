//! The onnxruntime engine: the bundle's stage graphs as onnxruntime sessions, through the `ort`
//! crate with the library loaded at run time. Nothing is linked: a binary runs without
//! onnxruntime as long as tract is the engine, and the library comes from wherever the user
//! has one (`library`).
//!
//! Each stage runs whole on its K rows in one call; onnxruntime shares a call among its own
//! intra-op threads (the frame state's thread count), where tract's runner hands rows to the
//! crew.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::TensorRef;

use super::runner::Runner;
use crate::error::{BundleError, RunError};
use crate::files::BundleFiles;
use crate::manifest::{block_stages, stage_files};
use crate::ModelConfig;

/// What a user without a usable library can do.
const INSTALL: &str = "Install it with `python3 -m pip install onnxruntime` (a venv is fine: \
    activate it, or point ORT_DYLIB_PATH at its onnxruntime/capi/libonnxruntime.so*), or a \
    release from github.com/microsoft/onnxruntime into /usr/local/lib; or use --engine tract";

/// The onnxruntime library this process loaded (or why it could not), found once.
pub fn library() -> Result<&'static Path, BundleError> {
    loaded().map(|(path, _)| path.as_path())
}

fn loaded() -> Result<&'static (PathBuf, Environment), BundleError> {
    static LOADED: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();
    LOADED
        .get_or_init(load)
        .as_ref()
        .map_err(|e| BundleError::OnnxRuntime(e.clone()))
}

/// `ORT_DYLIB_PATH`, else the first library found among `candidates()`, loaded and its
/// version checked by `ort`.
fn load() -> Result<(PathBuf, Environment), String> {
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let dirs = candidates();
            dirs.iter()
                .find_map(|d| library_in(d))
                .ok_or_else(|| not_found(&dirs))?
        }
    };
    open(&path)
}

fn not_found(looked: &[PathBuf]) -> String {
    let looked: Vec<String> = looked.iter().map(|d| d.display().to_string()).collect();
    format!(
        "its library (libonnxruntime.so) was not found; looked in {}. {INSTALL}",
        looked.join(", ")
    )
}

/// The library at `path`, loaded, with the process's one onnxruntime environment.
fn open(path: &Path) -> Result<(PathBuf, Environment), String> {
    let env = ort::init_from(path).map_err(|e| match e {
        ort::LoadDynamicError::BadVersion { version_str, .. } => format!(
            "{} is version {version_str}; this build needs onnxruntime 1.{} or newer",
            path.display(),
            ort::MINOR_VERSION
        ),
        e => format!("cannot load {}: {e}. {INSTALL}", path.display()),
    })?;
    // One pool for every stage session run on more than one thread: a pool per session would
    // have a frame's 22 sessions wake (or spin) their own threads in turn.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(cores)
        .and_then(|o| o.with_inter_threads(1))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let env = env
        .with_name("svit-edge")
        .with_global_thread_pool(pool)
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path.to_path_buf(), env))
}

/// Where a library may be: the Python package's `capi/` of an active venv, of `python3` on the
/// PATH, of the user's and the system's site-packages; then the usual system directories.
fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut site = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        site.push(PathBuf::from(venv).join("lib"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        site.push(PathBuf::from(home).join(".local/lib"));
    }
    site.extend(["/usr/local/lib", "/usr/lib"].map(PathBuf::from));
    if let Some(pkg) = python_package() {
        dirs.push(pkg.join("capi"));
    }
    for lib in site {
        // lib/python3.X/{site,dist}-packages/onnxruntime/capi
        let Ok(entries) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
            })
            .collect();
        pythons.sort();
        for py in pythons.iter().rev() {
            for packages in ["site-packages", "dist-packages"] {
                dirs.push(py.join(packages).join("onnxruntime/capi"));
            }
        }
    }
    dirs.extend(
        [
            "/usr/local/lib",
            "/usr/lib",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
        ]
        .map(PathBuf::from),
    );
    dirs.dedup();
    dirs
}

/// The `onnxruntime` package directory of the `python3` on the PATH (pyenv, conda, a venv
/// that is not activated but first on the PATH), if it has one.
fn python_package() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.util as u; s = u.find_spec('onnxruntime'); print(s.submodule_search_locations[0] if s else '')",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `libonnxruntime.so` or a versioned `libonnxruntime.so.1.x.y` in `dir` (the Python package
/// ships only the versioned name).
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n == "libonnxruntime.so" || n.starts_with("libonnxruntime.so.")
            })
        })
        .collect();
    found.sort();
    found.pop()
}

/// A session of the ONNX graph `bytes` (all of onnxruntime's graph optimisations; one inter-op
/// thread: a stage is one chain of ops); on failure, onnxruntime's reason. On more than one
/// thread it runs on the process's one pool of a thread per core (`open`). Pools of their own,
/// one per stage session, made the staged pass on 2 threads 10x slower than on one while they
/// spun between runs (138 against 12 ms here), and still slower than one thread without
/// spinning (10.2 against 7.9 ms, int8 pruned); on the shared pool: 7.2 ms. The dense-graph
/// peer shares it too, so that two spinning pools never fight over the cores in one bench.
pub(super) fn session_from(bytes: &[u8], threads: usize) -> Result<Session, String> {
    let (_, env) = loaded().map_err(|e| e.to_string())?;
    let b = Session::builder(env)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Level3)?));
    let b = if threads > 1 {
        b
    } else {
        b.and_then(|b| Ok(b.with_independent_thread_pool()?))
            .and_then(|b| Ok(b.with_intra_threads(1)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
    };
    b.and_then(|mut b| b.commit_from_memory(bytes))
        .map_err(|e| e.to_string())
}

/// A bundle's stage graphs, read once; each frame state makes its own sessions from them.
pub(super) struct OrtStages {
    /// embed, head, then per block qkv and block, then per gated block its gate.
    graphs: Vec<(String, Vec<u8>)>,
    depth: usize,
    /// Sessions made by `load` (one thread), for the first `runner(1)`.
    spare: Mutex<Option<OrtRunner>>,
    tokens: usize,
    row: usize,
    dim: usize,
    grid: usize,
    gated: Vec<bool>,
}

impl OrtStages {
    /// Reads every stage graph and makes a session of each, so that a graph onnxruntime refuses
    /// is named now rather than at the first frame.
    pub(super) fn load(
        files: &BundleFiles,
        cfg: &ModelConfig,
        precision: &str,
    ) -> Result<OrtStages, BundleError> {
        library()?;
        let mut rels = vec![
            stage_files(cfg, precision)[0].clone(),
            format!("{precision}/head.onnx"),
        ];
        for b in 0..cfg.depth {
            rels.extend(block_stages(b).map(|s| format!("{precision}/{s}.onnx")));
        }
        rels.extend(
            (0..cfg.depth)
                .filter(|&b| cfg.gated(b))
                .map(|b| format!("{precision}/gate_{b}.onnx")),
        );
        let graphs = rels
            .into_iter()
            .map(|rel| Ok((rel.clone(), files.read(&rel)?)))
            .collect::<Result<Vec<_>, BundleError>>()?;
        let mut stages = OrtStages {
            graphs,
            depth: cfg.depth,
            spare: Mutex::new(None),
            tokens: cfg.tokens(),
            row: cfg.embed_row(),
            dim: cfg.dim,
            grid: cfg.grid(),
            gated: (0..cfg.depth).map(|b| cfg.gated(b)).collect(),
        };
        let sessions = stages.sessions(1).map_err(|(rel, e)| BundleError::Graph {
            path: files.display(&rel),
            engine: "onnxruntime",
            source: e.into(),
        })?;
        stages.spare = Mutex::new(Some(stages.runner_from(sessions)));
        Ok(stages)
    }

    /// One session per graph, run on `threads` of onnxruntime's intra-op threads; on failure
    /// the graph's bundle path and onnxruntime's reason.
    fn sessions(&self, threads: usize) -> Result<Vec<Session>, (String, String)> {
        self.graphs
            .iter()
            .map(|(rel, bytes)| session_from(bytes, threads).map_err(|e| (rel.clone(), e)))
            .collect()
    }

    fn runner_from(&self, sessions: Vec<Session>) -> OrtRunner {
        let mut it = sessions.into_iter();
        let (embed, head) = (it.next(), it.next());
        let mut blocks = Vec::with_capacity(self.depth);
        for _ in 0..self.depth {
            blocks.push([it.next(), it.next()]);
        }
        let gates = self
            .gated
            .iter()
            .map(|&g| if g { it.next() } else { None })
            .collect();
        OrtRunner {
            embed,
            head,
            blocks,
            gates,
            index: (0..self.tokens as i64).collect(),
            row: self.row,
            dim: self.dim,
            grid: self.grid,
        }
    }

    pub(super) fn runner(&self, threads: usize) -> Result<OrtRunner, RunError> {
        let threads = threads.max(1);
        if threads == 1 {
            if let Some(r) = self.spare.lock().ok().and_then(|mut s| s.take()) {
                return Ok(r);
            }
        }
        let sessions = self
            .sessions(threads)
            .map_err(|(stage, e)| RunError::OnnxRuntime {
                stage,
                source: e.into(),
            })?;
        Ok(self.runner_from(sessions))
    }
}

pub(super) struct OrtRunner {
    embed: Option<Session>,
    head: Option<Session>,
    blocks: Vec<[Option<Session>; 2]>,
    gates: Vec<Option<Session>>,
    /// The embed stage's `index` input: every token's position.
    index: Vec<i64>,
    row: usize,
    dim: usize,
    grid: usize,
}

pub(super) fn ort_error(stage: &str) -> impl Fn(ort::Error) -> RunError + '_ {
    move |e| RunError::OnnxRuntime {
        stage: stage.into(),
        source: e.to_string().into(),
    }
}

fn session<'a>(s: &'a mut Option<Session>, stage: &str) -> Result<&'a mut Session, RunError> {
    s.as_mut().ok_or_else(|| RunError::OnnxRuntime {
        stage: stage.into(),
        source: "the bundle has no such graph".into(),
    })
}

/// Output `i` of a run as f32 values.
pub(super) fn f32_output<'a>(
    outs: &'a SessionOutputs,
    i: usize,
    stage: &str,
) -> Result<&'a [f32], RunError> {
    if i >= outs.len() {
        return Err(RunError::OutputSize {
            stage: stage.into(),
        });
    }
    outs[i]
        .try_extract_tensor::<f32>()
        .map(|(_, v)| v)
        .map_err(ort_error(stage))
}

impl Runner for OrtRunner {
    fn embed(&mut self, input: &[f32], map: &mut [f32]) -> Result<(), RunError> {
        let n = self.index.len();
        let patches =
            TensorRef::from_array_view(([1, n, self.row], input)).map_err(ort_error("embed"))?;
        let index =
            TensorRef::from_array_view(([n], &self.index[..])).map_err(ort_error("embed"))?;
        let outs = session(&mut self.embed, "embed")?
            .run(ort::inputs![patches, index])
            .map_err(ort_error("embed"))?;
        let y = f32_output(&outs, 0, "embed")?;
        if y.len() != map.len() {
            return Err(RunError::OutputSize {
                stage: "embed".into(),
            });
        }
        map.copy_from_slice(y);
        Ok(())
    }

    fn gate(&mut self, b: usize, map: &[f32], p_keep: &mut Vec<f32>) -> Result<(), RunError> {
        let stage = format!("gate_{b}");
        let x = TensorRef::from_array_view(([1, map.len() / self.dim, self.dim], map))
            .map_err(ort_error(&stage))?;
        let gate = self
            .gates
            .get_mut(b)
            .ok_or_else(|| RunError::Input(format!("no block {b}")))?;
        let outs = session(gate, &stage)?
            .run(ort::inputs![x])
            .map_err(ort_error(&stage))?;
        let probs = f32_output(&outs, 0, &stage)?;
        p_keep.extend(probs.chunks_exact(2).map(|p| p[0]));
        Ok(())
    }

    fn block(&mut self, b: usize, rows: &[f32], out: &mut Vec<f32>) -> Result<(), RunError> {
        let [qn, an] = block_stages(b);
        let k = rows.len() / self.dim;
        let [qkv, block] = self
            .blocks
            .get_mut(b)
            .ok_or_else(|| RunError::Input(format!("no block {b}")))?;
        let x = TensorRef::from_array_view(([1, k, self.dim], rows)).map_err(ort_error(&qn))?;
        let qkv_out = session(qkv, &qn)?
            .run(ort::inputs![x])
            .map_err(ort_error(&qn))?;
        if qkv_out.len() < 3 {
            return Err(RunError::OutputSize { stage: qn });
        }
        let x = TensorRef::from_array_view(([1, k, self.dim], rows)).map_err(ort_error(&an))?;
        let outs = session(block, &an)?
            .run(ort::inputs![x, &qkv_out[0], &qkv_out[1], &qkv_out[2]])
            .map_err(ort_error(&an))?;
        out.extend_from_slice(f32_output(&outs, 0, &an)?);
        Ok(())
    }

    fn head(&mut self, map: &[f32], out: &mut [Vec<f32>; 4]) -> Result<(), RunError> {
        let gc = self.grid * self.dim;
        let x = TensorRef::from_array_view(([1, map.len() / gc, gc], map))
            .map_err(ort_error("head"))?;
        let outs = session(&mut self.head, "head")?
            .run(ort::inputs![x])
            .map_err(ort_error("head"))?;
        for (i, dst) in out.iter_mut().enumerate() {
            dst.clear();
            dst.extend_from_slice(f32_output(&outs, i, "head")?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_that_is_not_there_is_named_with_how_to_install() {
        let Err(e) = open(Path::new("/nonexistent/libonnxruntime.so")) else {
            panic!("nothing to load there")
        };
        assert!(e.contains("/nonexistent/libonnxruntime.so"), "{e}");
        assert!(
            e.contains("pip install onnxruntime") && e.contains("--engine tract"),
            "{e}"
        );
    }

    #[test]
    fn not_finding_one_names_every_place_looked() {
        let e = not_found(&[PathBuf::from("/a/capi"), PathBuf::from("/usr/lib")]);
        assert!(e.contains("/a/capi, /usr/lib"), "{e}");
        assert!(e.contains("ORT_DYLIB_PATH"), "{e}");
    }

    #[test]
    fn the_python_packages_versioned_name_is_found() {
        let d = std::env::temp_dir().join(format!("svit-ort-lib-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(library_in(&d), None);
        for f in [
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so.1.32.0",
        ] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        assert_eq!(library_in(&d), Some(d.join("libonnxruntime.so.1.32.0")));
        let _ = std::fs::remove_dir_all(&d);
    }
}
