use proptest::prelude::*;

use super::*;

fn p(text: &str) -> Vec<String> {
    text.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn small() -> AnchorLimits {
    AnchorLimits {
        depth_max: 3,
        segment_bytes_max: 8,
        paths_max: 5,
        value_bytes_max: 4,
        values_bytes_max: 6,
        list_max: 10,
    }
}

#[test]
fn set_creates_parents_and_list_shows_children() {
    let mut tree: AnchorTree<u32> = AnchorTree::new(AnchorLimits::default());
    tree.set(&p("jobs/a"), Held::Value(b"1".to_vec())).unwrap();
    tree.set(&p("jobs/b"), Held::Capability(7)).unwrap();
    let root = tree.list(&[]).unwrap();
    assert_eq!(
        root,
        vec![ChildInfo {
            name: "jobs".into(),
            holds: HeldKind::Nothing,
            children: 2
        }]
    );
    let jobs = tree.list(&p("jobs")).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1].holds, HeldKind::Capability);
    assert_eq!(tree.get(&p("jobs/a")).unwrap(), Held::Value(b"1".to_vec()));
    assert_eq!(tree.get(&p("jobs")).unwrap(), Held::Nothing);
    assert!(matches!(
        tree.get(&p("nope")),
        Err(AnchorError::NotFound { .. })
    ));
    assert_eq!(tree.remove(&p("jobs")).unwrap(), 3);
    assert!(tree.is_empty());
}

#[test]
fn bad_paths_are_refused_and_change_nothing() {
    let mut tree: AnchorTree<u32> = AnchorTree::new(small());
    for bad in ["a/../b", "a/./b", "toolongsegment", "a/b/c/d"] {
        assert!(tree.set(&p(bad), Held::Nothing).is_err(), "{bad}");
    }
    assert!(tree
        .set(&["with/slash".to_string()], Held::Nothing)
        .is_err());
    assert!(tree.set(&["ctl\u{7}".to_string()], Held::Nothing).is_err());
    assert!(tree.set(&[String::new()], Held::Nothing).is_err());
    assert_eq!(tree.set(&[], Held::Nothing), Err(AnchorError::Root));
    assert!(tree.is_empty());
}

#[test]
fn bounds_refuse_and_drain() {
    let mut tree: AnchorTree<u32> = AnchorTree::new(small());
    assert!(matches!(
        tree.set(&p("a"), Held::Value(vec![0; 5])),
        Err(AnchorError::ValueTooLarge { .. })
    ));
    tree.set(&p("a"), Held::Value(vec![0; 4])).unwrap();
    assert!(matches!(
        tree.set(&p("b"), Held::Value(vec![0; 3])),
        Err(AnchorError::ValuesFull { .. })
    ));
    // Replacing a value counts only the difference.
    tree.set(&p("a"), Held::Value(vec![0; 2])).unwrap();
    tree.set(&p("b"), Held::Value(vec![0; 3])).unwrap();
    tree.set(&p("c/d/e"), Held::Nothing).unwrap();
    assert_eq!(tree.len(), 5);
    assert!(matches!(
        tree.set(&p("f"), Held::Nothing),
        Err(AnchorError::Full { .. })
    ));
    assert_eq!(tree.remove(&p("c")).unwrap(), 3);
    tree.set(&p("f"), Held::Value(vec![0; 1])).unwrap();
    assert_eq!(
        tree.remove(&[]).unwrap(),
        3,
        "removing the root empties the tree"
    );
    assert!(tree.is_empty());
    tree.set(&p("g"), Held::Value(vec![0; 4])).unwrap();
}

#[derive(Clone, Debug)]
enum Step {
    Set(Vec<String>, Option<Vec<u8>>),
    Remove(Vec<String>),
}

fn path() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![Just("a".to_string()), Just("b".to_string())],
        1..4,
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            path(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6))
        )
            .prop_map(|(p, v)| Step::Set(p, v)),
        path().prop_map(Step::Remove),
    ]
}

proptest! {
    /// Every change either succeeds as a plain map of paths would, or fails
    /// and leaves the tree exactly as it was.
    #[test]
    fn refusals_change_nothing_and_successes_match_a_model(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let limits = AnchorLimits { depth_max: 3, paths_max: 6, values_bytes_max: 10, value_bytes_max: 5, ..AnchorLimits::default() };
        let mut tree: AnchorTree<()> = AnchorTree::new(limits);
        let mut model: BTreeMap<Vec<String>, Option<Vec<u8>>> = BTreeMap::new();
        for step in steps {
            let before: Vec<(Vec<String>, Held<()>)> = tree.paths.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            match step {
                Step::Set(path, value) => {
                    let held = value.clone().map_or(Held::Nothing, Held::Value);
                    if tree.set(&path, held).is_ok() {
                        for len in 1..path.len() {
                            model.entry(path[..len].to_vec()).or_insert(None);
                        }
                        model.insert(path, value);
                    } else {
                        let after: Vec<(Vec<String>, Held<()>)> = tree.paths.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        prop_assert_eq!(before, after);
                    }
                }
                Step::Remove(path) => {
                    let expected = model.keys().filter(|k| k.starts_with(&path)).count();
                    match tree.remove(&path) {
                        Ok(n) => {
                            prop_assert_eq!(n, expected);
                            model.retain(|k, _| !k.starts_with(&path));
                        }
                        Err(_) => prop_assert_eq!(expected, 0),
                    }
                }
            }
            prop_assert_eq!(tree.len(), model.len());
            prop_assert!(tree.len() <= limits.paths_max);
            for (key, value) in &model {
                let want = value.clone().map_or(Held::Nothing, Held::Value);
                prop_assert_eq!(tree.get(key).unwrap(), want);
            }
        }
    }
}
