//! The `--weights` spec the ranked evaluations take, read into the ranking's weights.

use scoped_repo_mcp::ranked::Weights;

/// `body,path,defs,msgs,cochange`, then optionally `/` and the role priors
/// `test,docs,bench,example,generated,other,asked`, `/body_b,feedback[,comments]` and
/// `/key=value,...` (as `eval_questions` takes them; an empty section keeps the defaults).
pub fn parse_weights(s: &str) -> Weights {
    let mut parts = s.split('/');
    let fields = parts.next().unwrap_or("");
    let (roles, extra) = (
        parts.next().filter(|r| !r.is_empty()),
        parts.next().filter(|r| !r.is_empty()),
    );
    let knobs = parts.next();
    let nums =
        |s: &str| -> Vec<f32> { s.split(',').map(|x| x.parse().expect("a number")).collect() };
    let v = nums(fields);
    assert_eq!(v.len(), 5, "--weights takes body,path,defs,msgs,cochange");
    let mut w = Weights {
        body: v[0],
        path: v[1],
        defs: v[2],
        msgs: v[3],
        cochange: v[4],
        ..Weights::default()
    };
    if let Some(r) = roles {
        let r = nums(r);
        assert_eq!(
            r.len(),
            7,
            "role priors: test,docs,bench,example,generated,other,asked"
        );
        w.roles = scoped_repo_mcp::ranked::role::RolePriors {
            test: r[0],
            docs: r[1],
            bench: r[2],
            example: r[3],
            generated: r[4],
            other: r[5],
            asked: r[6],
        };
    }
    if let Some(x) = extra {
        let x = nums(x);
        assert!(
            x.len() == 2 || x.len() == 3,
            "after the role priors: body_b,feedback[,comments]"
        );
        w.body_b = x[0];
        w.feedback = x[1];
        if let [_, _, comments] = x[..] {
            w.comments = comments;
        }
    }
    for kv in knobs.into_iter().flat_map(|k| k.split(',')) {
        let (k, v) = kv.split_once('=').expect("knob=value");
        let v: f32 = v.parse().expect("a number");
        match k {
            "scope" => w.scope = v,
            "dir" => w.related.dir = v,
            "pair" => w.related.pair = v,
            "spair" => w.related.source_pair = v,
            "floor" => w.related.floor = v > 0.0,
            "cc" => w.related.cochange = v,
            "depth" => w.related.depth = v as usize,
            "prox" => w.proximity = v,
            "pdepth" => w.proximity_depth = v as usize,
            "pall" => w.proximity_all = v > 0.0,
            "gate" => {
                w.related_for = match v as u32 {
                    0 => scoped_repo_mcp::ranked::RelatedFor::All,
                    1 => scoped_repo_mcp::ranked::RelatedFor::Statements,
                    _ => scoped_repo_mcp::ranked::RelatedFor::Prefixed,
                }
            }
            other => panic!("unknown knob {other}"),
        }
    }
    w
}
