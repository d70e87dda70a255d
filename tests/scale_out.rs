//! Scale-out: one experiment split into shards, run by a real scheduler, merged back.
//!
//! - A real single-node Slurm cluster (Debian's `slurm-wlm` and `munge`; munged, slurmctld and
//!   slurmd started directly by this test, no systemd) runs the shipped recipe
//!   `examples/slurm/ipw-array.sbatch` as an array of 4 over the embedded model; one task is
//!   cancelled mid-run with `scancel` and resubmitted; `ipw merge` then gives exactly the
//!   records of an unsharded run of the same plan.
//! - Kubernetes: no cluster is available here, so the Indexed Job manifest is checked against
//!   the fields Kubernetes requires, and `--shard auto` with `JOB_COMPLETION_INDEX` is shown to
//!   measure what `--shard i/n` measures.
//! - Merge refuses shards of different experiments, a missing shard and a doubled query.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small real experiment: the embedded model on `gsm8k` + `mmlu` queries.
fn experiment(name: &str, queries: usize, max_tokens: u32) -> String {
    format!(
        "name = \"{name}\"\nseed = 11\n[run]\nwarmup_queries = 1\n\
         [generation]\nmax_tokens = {max_tokens}\ntemperature = 0.0\n\
         [[models]]\nname = \"smol\"\npath = {}\nthreads = 1\n\
         [[samplers]]\nplugin = \"cpu-estimate\"\nrate_hz = 20\n[energy]\nbaseline_s = 0.5\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = {queries}\n\
         [[datasets]]\nbuiltin = \"mmlu\"\nmax_queries = {queries}\n",
        q(&model_path())
    )
}

/// Query ids of a run directory, checking none appears twice.
fn ids(run: &Path) -> Vec<String> {
    let ids: Vec<String> = records(run)
        .iter()
        .map(|r| r["query_id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "a query twice in {}",
        run.display()
    );
    ids
}

fn shard_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("shards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn merge(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["merge", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_ipw(&args, out.parent().unwrap())
}

fn shard(exp: &Path, out: &Path, spec: &str) -> std::process::Output {
    run_ipw(
        &[
            "profile",
            exp.to_str().unwrap(),
            "--shard",
            spec,
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
        exp.parent().unwrap(),
    )
}

/// A one-node Slurm cluster in a temporary directory, stopped when dropped.
struct Slurm {
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Slurm {
    /// Start munged, slurmctld and slurmd, or say why not: `None` (with the reason printed)
    /// only when this machine cannot run them and nothing asked for them; in CI, or under the
    /// README's test command as root (`scripts/test.sh` installs Slurm and sets
    /// `IPW_REQUIRE_SLURM`), that is a failure, never a silent skip.
    fn start() -> Option<Slurm> {
        let missing: Vec<&str> = [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
        ]
        .into_iter()
        .filter(|b| !which(b))
        .collect();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc_geteuid() } == 0;
        if !missing.is_empty() || !root {
            let why = format!(
                "a single-node Slurm needs root and slurm-wlm + munge (scripts/install-deps.sh); missing: {missing:?}, root: {root}"
            );
            assert!(
                std::env::var_os("CI").is_none() && std::env::var_os("IPW_REQUIRE_SLURM").is_none(),
                "{why}"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let key: Vec<u8> = (0..1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ std::process::id() as u8)
            .collect();
        std::fs::write(d.join("munge.key"), key).unwrap();
        set_mode(&d.join("munge.key"), 0o400);
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let cpus = std::thread::available_parallelism().unwrap().get();
        let (ctld_port, slurmd_port) = (free_port(), free_port());
        let p = |s: &str| d.join(s).display().to_string();
        let conf = format!(
            "ClusterName=ipwtest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctld_port}\n\
             SlurmdPort={slurmd_port}\nSlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\n\
             CredType=cred/munge\nAuthInfo=socket={sock}\nStateSaveLocation={state}\n\
             SlurmdSpoolDir={spool}\nSlurmctldPidFile={cpid}\nSlurmdPidFile={dpid}\n\
             SlurmctldLogFile={clog}\nSlurmdLogFile={dlog}\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             JobCompType=jobcomp/none\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\nMpiDefault=none\nReturnToService=2\nKillWait=5\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            sock = p("munge.sock"),
            state = p("state"),
            spool = p("spool"),
            cpid = p("slurmctld.pid"),
            dpid = p("slurmd.pid"),
            clog = p("log/slurmctld.log"),
            dlog = p("log/slurmd.log"),
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        let mut slurm = Slurm {
            dir,
            daemons: Vec::new(),
        };
        let spawn = |cmd: &mut Command| {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        slurm.daemons.push(spawn(Command::new("munged").args([
            "-F",
            "--force",
            &format!("--key-file={}", p("munge.key")),
            &format!("--socket={}", p("munge.sock")),
            &format!("--pid-file={}", p("munged.pid")),
            &format!("--log-file={}", p("log/munged.log")),
            &format!("--seed-file={}", p("munged.seed")),
        ])));
        wait_for("munged's socket", Duration::from_secs(10), || {
            Path::new(&p("munge.sock")).exists()
        });
        let conf = p("slurm.conf");
        slurm.daemons.push(spawn(
            Command::new("slurmctld").args(["-D", "-i", "-f", &conf]),
        ));
        slurm
            .daemons
            .push(spawn(Command::new("slurmd").args(["-D", "-f", &conf])));
        let started = Instant::now();
        wait_for("the node to be idle", Duration::from_secs(60), || {
            let o = slurm
                .cmd("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).trim() == "idle"
        });
        eprintln!(
            "slurm: node {host} ({cpus} CPUs) idle {:.1} s after start",
            started.elapsed().as_secs_f64()
        );
        Some(slurm)
    }

    /// A Slurm client command pointed at this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.dir.path().join("slurm.conf"));
        c
    }

    /// `sbatch --parsable` the shipped experiment recipe; returns the job id.
    fn submit(&self, array: &str, cwd: &Path, exp: &Path, out: &Path) -> String {
        self.submit_recipe("ipw-array.sbatch", array, cwd, &[exp, out])
    }

    /// `sbatch --parsable` a shipped recipe of `examples/slurm/` with `args`; returns the job id.
    fn submit_recipe(&self, recipe: &str, array: &str, cwd: &Path, args: &[&Path]) -> String {
        let recipe = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/slurm")
            .join(recipe);
        let o = self
            .cmd("sbatch")
            .args(["--parsable", &format!("--array={array}")])
            .arg(&recipe)
            .args(args)
            .env("IPW", env!("CARGO_BIN_EXE_ipw"))
            .env_remove("IPW_SHARD_COUNT")
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(o.status.success(), "sbatch: {}", text(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }

    /// Wait until no task of `job` is pending or running.
    fn wait(&self, job: &str, limit: Duration) {
        wait_for(&format!("job {job} to end"), limit, || {
            let o = self
                .cmd("squeue")
                .args(["-h", "-r", "-j", job])
                .output()
                .unwrap();
            o.status.success() && String::from_utf8_lossy(&o.stdout).trim().is_empty()
        });
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/slurmctld.log")).unwrap_or_default()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for d in self.daemons.iter_mut().rev() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(program).is_file())
    })
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// One single-node Slurm at a time: two clusters would both name this host as their node.
static ONE_SLURM: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_slurm_array_with_a_cancelled_and_resubmitted_task_merges_into_the_unsharded_run() {
    let _one = ONE_SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let Some(slurm) = Slurm::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let exp = write_experiment(work.path(), "exp.toml", &experiment("slurm", 12, 32));

    // The same plan, unsharded, for comparison.
    let t = Instant::now();
    let whole = work.path().join("whole");
    let o = profile_file(&exp, &whole, work.path());
    assert!(o.status.success(), "{}", text(&o));
    let unsharded_s = t.elapsed().as_secs_f64();
    let want = ids(&whole.join("smol"));
    assert_eq!(want.len(), 24);

    let out = work.path().join("runs/exp");
    let t = Instant::now();
    let job = slurm.submit("0-3", work.path(), &exp, &out);
    // Cancel task 1 once it has measured something, while it still has queries to go.
    let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let host = ipw_core::records::sanitize(&host);
    let task1 = out.join(format!("shards/1-of-4@{host}/smol"));
    wait_for("task 1's first record", Duration::from_secs(300), || {
        lines(&task1.join("records.jsonl")) >= 1
    });
    let o = slurm
        .cmd("scancel")
        .arg(format!("{job}_1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "scancel: {}", text(&o));
    slurm.wait(&job, Duration::from_secs(600));
    let array_s = t.elapsed().as_secs_f64();

    let planned1 = json(&task1.join("manifest.json"))["planned"]
        .as_u64()
        .unwrap() as usize;
    let cut = ids(&task1).len();
    assert!(
        cut < planned1,
        "task 1 finished before scancel reached it ({cut} of {planned1}); the test proves nothing"
    );
    let task1_log =
        std::fs::read_to_string(work.path().join(format!("ipw-{job}_1.out"))).unwrap_or_default();
    // Refused while shard 1 is short, naming what is missing.
    let o = merge(&out, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let t_err = text(&o);
    assert!(
        t_err.contains(&format!(
            "{} of 24 planned queries have no record",
            planned1 - cut
        )),
        "{t_err}"
    );

    // Resubmit index 1 alone: Slurm says 1 task, the directory says 4 shards.
    let t2 = Instant::now();
    let again = slurm.submit("1", work.path(), &exp, &out);
    slurm.wait(&again, Duration::from_secs(600));
    let resubmit_s = t2.elapsed().as_secs_f64();
    let m1 = json(&task1.join("manifest.json"));
    assert_eq!(m1["status"], "completed", "{m1}");
    assert_eq!(
        m1["sessions"].as_array().unwrap().len(),
        2,
        "continued, not redone"
    );
    assert_eq!(
        m1["sessions"][1]["resumed_from"].as_u64().unwrap() as usize,
        cut
    );

    let o = merge(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let report = text(&o);
    let merged = out.join("smol");
    let got = ids(&merged);
    assert_eq!(
        got, want,
        "merged records are the unsharded run's, in plan order"
    );
    let m = json(&merged.join("manifest.json"));
    let w = json(&whole.join("smol/manifest.json"));
    assert_eq!(m["plan_sha256"], w["plan_sha256"]);
    assert_eq!(m["status"], "completed");
    assert_eq!(m["merged_from"].as_array().unwrap().len(), 4);
    let indexes: Vec<u64> = records(&merged)
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, (0..24).collect::<Vec<u64>>());
    // Every shard says where it ran and which split it belongs to.
    let mut sizes = Vec::new();
    for s in shard_dirs(&out) {
        let sm = json(&s.join("smol/manifest.json"));
        assert_eq!(sm["shard"]["count"], 4);
        assert_eq!(sm["shard"]["host"], host.as_str());
        sizes.push(sm["planned"].as_u64().unwrap());
    }
    assert_eq!(sizes.iter().sum::<u64>(), 24);

    eprintln!(
        "slurm array job {job} (4 tasks, sizes {sizes:?}); task 1 cancelled after {cut} of {planned1} \
         records (its log: {:?}); resubmitted as job {again} ({resubmit_s:.1} s); merged {} records \
         of 24 planned, no gaps, no duplicates.\n4-way array (with the cancel) {array_s:.1} s; \
         unsharded {unsharded_s:.1} s on {} CPUs\n{report}",
        task1_log.lines().last().unwrap_or(""),
        got.len(),
        std::thread::available_parallelism().unwrap().get()
    );
    assert!(!slurm.log().contains("fatal"), "{}", slurm.log());
}

/// The study beyond one machine as the README tells it: the shipped recipe
/// `examples/slurm/ipw-partial.sbatch` makes one study part per run as a Slurm array, and
/// `ipw compare` and `ipw coverage` over the parts write byte for byte what they write over the
/// runs. (The runs are imported from a table: the point here is the split and the combine.)
#[test]
fn a_slurm_array_of_study_parts_combines_into_what_one_machine_computes() {
    let _one = ONE_SLURM.lock().unwrap_or_else(|e| e.into_inner());
    let Some(slurm) = Slurm::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut csv = String::from("query_id,model,dataset,subject,score,energy_j,latency_s\n");
    for (m, model) in ["big", "mid", "small", "tiny"].iter().enumerate() {
        for q in 0..3000u64 {
            // Some queries one model lacks: left out of the paired figures, both ways.
            if m == 3 && q % 29 == 0 {
                continue;
            }
            let h = q.wrapping_mul(2_654_435_761).wrapping_add(m as u64 * 97) % 1000;
            let score = u8::from(h < 800 - 150 * m as u64);
            let joules = (4 - m) as f64 * (1.0 + h as f64 / 250.0);
            csv.push_str(&format!(
                "q{q},{model},{},s{},{score},{joules},{}\n",
                ["gsm8k", "mmlu"][(q % 2) as usize],
                q % 7,
                0.1 + h as f64 / 2000.0
            ));
        }
    }
    let runs = import_table(work.path(), &csv);
    let parts = work.path().join("parts");
    let job = slurm.submit_recipe("ipw-partial.sbatch", "0-3", work.path(), &[&runs, &parts]);
    slurm.wait(&job, Duration::from_secs(300));
    let logs: String = (0..4)
        .map(|i| {
            std::fs::read_to_string(work.path().join(format!("ipw-partial-{job}_{i}.out")))
                .unwrap_or_default()
        })
        .collect();
    let mut made: Vec<String> = std::fs::read_dir(&parts)
        .unwrap_or_else(|e| panic!("{}: {e}\n{logs}", parts.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(
        made,
        [
            "big.part.parquet",
            "mid.part.parquet",
            "small.part.parquet",
            "tiny.part.parquet"
        ],
        "{logs}"
    );
    let write = |inputs: &Path, out: &str, args: &[&str]| -> (String, String) {
        let dir = work.path().join(out);
        let mut all = vec![
            args[0],
            inputs.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ];
        all.extend(&args[1..]);
        let o = run_ipw(&all, work.path());
        assert!(o.status.success(), "{}", text(&o));
        let read =
            |ext: &str| std::fs::read_to_string(dir.join(format!("{}.{ext}", args[0]))).unwrap();
        (read("json"), read("csv"))
    };
    for args in [
        &["compare", "--by", "subject", "--baseline", "small"][..],
        &["coverage", "--reference", "big", "--tolerance", "0"][..],
    ] {
        let one = write(&runs, "one", args);
        let combined = write(&parts, "combined", args);
        assert!(one.0.contains("\"ci95\""), "{}", one.0);
        assert_eq!(one, combined, "{args:?}: one machine and parts differ");
    }
    eprintln!(
        "slurm array job {job}: 4 parts, combined compare and coverage equal the runs'\n{logs}"
    );
    assert!(!slurm.log().contains("fatal"), "{}", slurm.log());
}

/// What the manifest must have for `kubectl apply` to accept it and for ipw to shard: the
/// fields Kubernetes requires of a batch/v1 Job (name, containers with name and image, a Never
/// or OnFailure restart policy, completions with Indexed mode), volume mounts that name
/// declared volumes, and IPW_SHARD_COUNT equal to completions.
fn check_indexed_job(doc: &serde_yaml::Value) -> Result<usize, String> {
    let s = |v: &serde_yaml::Value, path: &str| -> Result<String, String> {
        let mut cur = v;
        for k in path.split('.') {
            cur = cur.get(k).ok_or_else(|| format!("missing {path}"))?;
        }
        cur.as_str()
            .map(str::to_string)
            .or_else(|| cur.as_u64().map(|n| n.to_string()))
            .ok_or_else(|| format!("{path} is not a scalar"))
    };
    if s(doc, "apiVersion")? != "batch/v1" || s(doc, "kind")? != "Job" {
        return Err("not a batch/v1 Job".into());
    }
    let dns_label = |n: &str| {
        !n.is_empty()
            && n.len() <= 63
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !n.starts_with('-')
            && !n.ends_with('-')
    };
    let name = s(doc, "metadata.name")?;
    if !dns_label(&name) {
        return Err(format!("metadata.name {name:?} is not a DNS label"));
    }
    if s(doc, "spec.completionMode")? != "Indexed" {
        return Err("spec.completionMode must be Indexed (pods get JOB_COMPLETION_INDEX)".into());
    }
    let completions: usize = s(doc, "spec.completions")?
        .parse()
        .map_err(|_| "spec.completions is not a number")?;
    let pod = &doc["spec"]["template"]["spec"];
    let restart = s(pod, "restartPolicy")?;
    if !["Never", "OnFailure"].contains(&restart.as_str()) {
        return Err(format!(
            "a Job's restartPolicy must be Never or OnFailure, not {restart}"
        ));
    }
    let volumes: BTreeSet<String> = pod["volumes"]
        .as_sequence()
        .ok_or("no volumes")?
        .iter()
        .map(|v| s(v, "name"))
        .collect::<Result<_, _>>()?;
    let containers = pod["containers"].as_sequence().ok_or("no containers")?;
    if containers.is_empty() {
        return Err("no containers".into());
    }
    let mut count = None;
    for c in containers {
        let cname = s(c, "name")?;
        if !dns_label(&cname) {
            return Err(format!("container name {cname:?} is not a DNS label"));
        }
        s(c, "image")?;
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            let v = s(m, "name")?;
            if !volumes.contains(&v) {
                return Err(format!("volumeMount {v} names no volume"));
            }
            s(m, "mountPath")?;
        }
        for e in c["env"].as_sequence().into_iter().flatten() {
            if e["value"].as_str().is_none() && e.get("valueFrom").is_none() {
                return Err(format!("env {} needs a string value", s(e, "name")?));
            }
            if s(e, "name")? == "IPW_SHARD_COUNT" {
                count = Some(s(e, "value")?);
            }
        }
        let argv: Vec<&str> = c["args"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        if !argv.windows(2).any(|w| w == ["--shard", "auto"]) {
            return Err("the container does not run --shard auto".into());
        }
    }
    match count {
        Some(c) if c == completions.to_string() => Ok(completions),
        Some(c) => Err(format!(
            "IPW_SHARD_COUNT {c} != spec.completions {completions}"
        )),
        None => Err("IPW_SHARD_COUNT is not set (Kubernetes gives pods no count)".into()),
    }
}

#[test]
fn the_kubernetes_indexed_job_is_valid_and_auto_sharding_matches_a_fixed_shard() {
    // No Kubernetes cluster is available here: the manifest is checked against what the API
    // server requires, and the index it hands pods is exercised through the environment.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/k8s/ipw-indexed-job.yaml");
    let text_yaml = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text_yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let job = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Job"))
        .expect("a Job in the manifest");
    assert_eq!(check_indexed_job(job), Ok(8));
    // The check can fail: a count that disagrees, a wrong restart policy, a dangling mount.
    let mut bad = job.clone();
    bad["spec"]["completions"] = 4.into();
    assert!(check_indexed_job(&bad)
        .unwrap_err()
        .contains("!= spec.completions"));
    let mut bad = job.clone();
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always".into();
    assert!(check_indexed_job(&bad).is_err());
    let mut bad = job.clone();
    bad["spec"]["template"]["spec"]["volumes"] = serde_yaml::Value::Sequence(Vec::new());
    assert!(check_indexed_job(&bad)
        .unwrap_err()
        .contains("names no volume"));

    let work = tempfile::tempdir().unwrap();
    let exp = write_experiment(work.path(), "exp.toml", &experiment("k8s", 3, 4));
    let auto_out = work.path().join("auto");
    let o = ipw()
        .args(["profile", exp.to_str().unwrap(), "--shard", "auto", "--out"])
        .arg(&auto_out)
        .arg("-q")
        .env("JOB_COMPLETION_INDEX", "1")
        .env("IPW_SHARD_COUNT", "2")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let fixed_out = work.path().join("fixed");
    let o = shard(&exp, &fixed_out, "1/2");
    assert!(o.status.success(), "{}", text(&o));
    let auto_dirs = shard_dirs(&auto_out);
    let fixed_dirs = shard_dirs(&fixed_out);
    assert_eq!(auto_dirs.len(), 1);
    assert!(auto_dirs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("1-of-2@"));
    let a = ids(&auto_dirs[0].join("smol"));
    assert_eq!(a, ids(&fixed_dirs[0].join("smol")));
    assert_eq!(a.len(), 3, "half of 6 queries");
    // Without a count, auto says what to set.
    let o = ipw()
        .args(["profile", exp.to_str().unwrap(), "--shard", "auto", "-q"])
        .env("JOB_COMPLETION_INDEX", "1")
        .env_remove("IPW_SHARD_COUNT")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("IPW_SHARD_COUNT"), "{}", text(&o));
}

#[test]
fn merge_refuses_other_experiments_missing_shards_and_doubled_queries() {
    let work = tempfile::tempdir().unwrap();
    let exp = write_experiment(work.path(), "exp.toml", &experiment("m", 2, 4));
    let out = work.path().join("runs");
    let o = shard(&exp, &out, "0/2");
    assert!(o.status.success(), "{}", text(&o));

    // A resubmission that lands on another host: the first host's directory (renamed here to
    // stand for it, cut to one record as if preempted) keeps what it measured, and the new one
    // measures only the rest.
    let first = shard_dirs(&out)[0].clone();
    let moved = out.join("shards/0-of-2@oldhost");
    std::fs::rename(&first, &moved).unwrap();
    let recs = std::fs::read_to_string(moved.join("smol/records.jsonl")).unwrap();
    assert_eq!(recs.lines().count(), 2);
    std::fs::write(
        moved.join("smol/records.jsonl"),
        format!("{}\n", recs.lines().next().unwrap()),
    )
    .unwrap();
    let o = shard(&exp, &out, "0/2");
    assert!(o.status.success(), "{}", text(&o));
    let (old, fresh) = (ids(&moved.join("smol")), ids(&first.join("smol")));
    assert_eq!((old.len(), fresh.len()), (1, 1));
    assert_ne!(old, fresh);
    let m = json(&first.join("smol/manifest.json"));
    assert_eq!(m["shard"]["measured_elsewhere"]["0-of-2@oldhost"], 1, "{m}");
    assert_eq!(m["status"], "completed");

    // A missing shard: named, and refused unless --allow-partial.
    let o = merge(&out, &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("1 of 2 shards have no directory") && t.contains(": 1\n"),
        "{t}"
    );
    assert!(t.contains("of 4 planned queries have no record"), "{t}");
    let o = merge(&out, &["--allow-partial"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&out.join("smol/manifest.json"))["status"], "partial");

    let o = shard(&exp, &out, "1/2");
    assert!(o.status.success(), "{}", text(&o));
    let o = merge(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let merged = out.join("smol");
    assert_eq!(json(&merged.join("manifest.json"))["status"], "completed");
    // Idempotent: merging again writes the same bytes.
    let before: Vec<Vec<u8>> = [
        "records.jsonl",
        "manifest.json",
        "summary.json",
        "power.jsonl",
    ]
    .iter()
    .map(|f| std::fs::read(merged.join(f)).unwrap())
    .collect();
    let o = merge(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    for (f, b) in [
        "records.jsonl",
        "manifest.json",
        "summary.json",
        "power.jsonl",
    ]
    .iter()
    .zip(&before)
    {
        assert_eq!(&std::fs::read(merged.join(f)).unwrap(), b, "{f} changed");
    }
    // The merged run's power log lines up with its sessions: energy re-attributes the same.
    let o = run_ipw(&["attribute", merged.to_str().unwrap()], work.path());
    assert!(o.status.success(), "{}", text(&o));
    let energy = |rs: &[Value]| -> Vec<Value> {
        rs.iter().map(|r| r["energy"]["gross_j"].clone()).collect()
    };
    let after = records(&merged);
    assert!(after
        .iter()
        .all(|r| r["energy"]["gross_j"].as_f64().unwrap() > 0.0));
    let before_records: Vec<Value> = std::str::from_utf8(&before[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(energy(&after), energy(&before_records));

    // A doubled query: the same shard's directory copied in as if from another host.
    let dirs = shard_dirs(&out);
    let copy = out.join("shards/0-of-2@elsewhere");
    copy_dir(&dirs[0], &copy);
    let o = merge(&out, &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("measured by more than one shard run") && t.contains("0-of-2@elsewhere"),
        "{t}"
    );
    std::fs::remove_dir_all(&copy).unwrap();

    // An ordinary run where a merged one would go is never overwritten.
    let plain = work.path().join("plain");
    let o = profile_file(&exp, &plain, work.path());
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&merged).unwrap();
    copy_dir(&plain.join("smol"), &merged);
    let o = merge(&out, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("holds a run that `ipw merge` did not write"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&merged).unwrap();
    let o = merge(&plain, &[]);
    assert!(
        text(&o).contains("not a split experiment directory"),
        "{}",
        text(&o)
    );

    // Another experiment: the same plan with other settings, written into the same directory.
    let other = write_experiment(work.path(), "other.toml", &experiment("m", 2, 5));
    let elsewhere = work.path().join("other-runs");
    let o = shard(&other, &elsewhere, "1/2");
    assert!(o.status.success(), "{}", text(&o));
    let last = shard_dirs(&out).pop().unwrap();
    std::fs::remove_dir_all(&last).unwrap();
    copy_dir(&shard_dirs(&elsewhere)[0], &last);
    let o = merge(&out, &[]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("settings differ") && t.contains("generation.max_tokens: 4 -> 5"),
        "{t}"
    );

    // A different plan is refused by profile itself, before it measures anything.
    let third = write_experiment(work.path(), "third.toml", &experiment("m", 3, 4));
    let o = shard(&third, &out, "1/2");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("holds shards of another plan"),
        "{}",
        text(&o)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn merge_of_shards_larger_than_its_memory_cap_completes() {
    // Two real shard runs of the embedded model (one query each), then grown to a plan of
    // 40,000 queries with 4 KB responses (165 MB of records), as a study's shards of long
    // answers would be. Held whole, as merge did until it indexed the shards and read their
    // records back in plan order, it peaked at 944 MiB here; indexed, at 122 MiB. The cap
    // sits between, far from both.
    const CAP_MIB: f64 = 400.0;
    const N: usize = 40_000;
    use sha2::Digest;
    let work = tempfile::tempdir().unwrap();
    let exp = write_experiment(work.path(), "exp.toml", &experiment("m", 1, 4));
    let out = work.path().join("runs");
    for spec in ["0/2", "1/2"] {
        let o = shard(&exp, &out, spec);
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut plan = String::new();
    for i in 0..N {
        plan.push_str(&format!("big/{i}\t{i:064x}\n"));
    }
    std::fs::write(out.join("plan.tsv"), &plan).unwrap();
    let sha: String = sha2::Sha256::digest(plan.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for (k, dir) in shard_dirs(&out).iter().enumerate() {
        let run = dir.join("smol");
        let template = records(&run).remove(0);
        let mut lines = String::new();
        for i in (k..N).step_by(2) {
            let mut r = template.clone();
            r["query_id"] = format!("big/{i}").into();
            r["prompt_hash"] = format!("{i:064x}").into();
            r["response"] = format!("{i} {}", "words ".repeat(680)).into();
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        }
        std::fs::write(run.join("records.jsonl"), lines).unwrap();
        let mut m = json(&run.join("manifest.json"));
        m["shard"]["plan_sha256"] = sha.clone().into();
        std::fs::write(run.join("manifest.json"), m.to_string()).unwrap();
    }
    let (o, peak) = peak_rss_mib(&["merge", out.to_str().unwrap()], work.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(peak < CAP_MIB, "merge peaked at {peak:.0} MiB");
    let merged = out.join("smol");
    let m = json(&merged.join("manifest.json"));
    assert_eq!(m["status"], "completed", "{m}");
    assert_eq!(json(&merged.join("summary.json"))["recorded"], N);
    // In plan order, each record its plan position and its own response.
    let text = std::fs::read_to_string(merged.join("records.jsonl")).unwrap();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["query_id"], format!("big/{i}"));
        assert_eq!(r["index"], i);
        assert!(r["response"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{i} ")));
        n += 1;
    }
    assert_eq!(n, N);
}
