//! `subject find` at scale: a store of 100 runs, each with one output of 1,000,000 subjects in
//! its subject index; one subject looked up in all of them (held by every tenth). Prints the
//! index's size on disk per million subjects.

// The allocator the privprep binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use privprep::identity::keys::resolve_index_key;
use privprep::lineage::index::{index_dir, set_file_name};
use privprep::lineage::{RunRecord, RunStatus, Store, SubjectSetRecord};
use privprep_kernels::subject::{encode, SubjectHasher};
use rand::{Rng, SeedableRng};

const OUTPUTS: usize = 100;
const SUBJECTS: usize = 1_000_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let db = state.join("lineage.db");
    let mut store = Store::open(&db).expect("store");
    let hasher = SubjectHasher::new(&resolve_index_key(&state).expect("index key"));
    let target = hasher.key("S-0424242").expect("key");
    let sets = index_dir(&db);
    std::fs::create_dir_all(&sets).expect("index dir");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut bytes_on_disk = 0u64;
    for n in 0..OUTPUTS {
        let run_id = format!("20261126T000000Z-{n:06}");
        let mut keys: Vec<u64> = (0..SUBJECTS).map(|_| rng.random()).collect();
        if n % 10 == 0 {
            keys[0] = target;
        }
        let blob = encode(&mut keys);
        bytes_on_disk += blob.len() as u64;
        let file = set_file_name(&run_id, 0);
        std::fs::write(sets.join(&file), &blob).expect("write set");
        let mut record =
            RunRecord::begin(&run_id, "2026-11-26T00:00:00Z", "bench", "b.toml", "00", "");
        record.status = RunStatus::Succeeded;
        record.finished_at = "2026-11-26T00:00:01Z".into();
        record.subject_index.push(SubjectSetRecord {
            output: format!("/nonexistent/out-{n}.parquet"),
            kind: "data".into(),
            subjects: keys.len() as u64,
            file,
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&blob)),
        });
        store.append(&record).expect("append");
    }
    println!(
        "subject index: {OUTPUTS} outputs x {SUBJECTS} subjects, {:.1} MB on disk, {:.2} MB per million subjects",
        bytes_on_disk as f64 / 1e6,
        bytes_on_disk as f64 / 1e6 / (OUTPUTS * SUBJECTS) as f64 * 1e6
    );
    let ids = vec!["S-0424242".to_string()];
    let found = privprep::subjects::find(&store, &state, &ids).expect("find");
    assert_eq!(found[0].holdings.len(), OUTPUTS / 10);
    let mut g = c.benchmark_group("subject_find");
    g.sample_size(10);
    g.bench_function("100_outputs_x_1M_subjects", |b| {
        b.iter(|| privprep::subjects::find(&store, &state, &ids).expect("find"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
