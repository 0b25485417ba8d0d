//! Every fuzz target's corpus (`fuzz/corpus/NAME/`: the seeds, and each input that once
//! crashed a target, kept as a regression) replayed through the target's body on stable.

use svit_e2e::fuzz::TARGETS;
use svit_e2e::workspace;

#[test]
fn every_corpus_file_runs_through_its_target() {
    let root = workspace().join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (each target keeps a corpus)", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: an empty corpus", dir.display());
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} fails on {}", f.display());
        }
    }
}

#[test]
fn the_targets_listed_are_the_targets_built() {
    let built: Vec<String> = std::fs::read_dir(workspace().join("fuzz/fuzz_targets"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    for (name, _) in TARGETS {
        assert!(
            built.iter().any(|b| b == name),
            "no fuzz/fuzz_targets/{name}.rs"
        );
    }
    assert_eq!(
        built.len(),
        TARGETS.len(),
        "a fuzz target not in svit_e2e::fuzz::TARGETS: {built:?}"
    );
}
