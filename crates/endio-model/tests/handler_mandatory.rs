//! Handler mandatory: no reachable state runs a deferred bio without a
//! handler, in any design, and the finding points at endio's `Bio`, which
//! makes such a bio unrepresentable (the compile_fail doctests of
//! `crates/endio/src/bio.rs`).

use endio_model::{Config, Design, Property, Question, Verdict, check};

#[test]
fn no_deferred_bio_runs_without_a_handler() {
    for design in Design::ALL {
        let report = check(Question::HandlerMandatory, design, &Config::default());
        for property in [Property::HandlerPresent, Property::ExactlyOnce] {
            assert_eq!(
                report.verdict("as designed", property),
                Some(Verdict::Holds),
                "{design}: {report:#?}"
            );
        }
        // Nothing else was found violated on the way.
        assert!(
            report.results().all(|(_, r)| r.verdict == Verdict::Holds),
            "{design}: {report:#?}"
        );
    }
}

#[test]
fn three_cpus_and_four_bios_agree() {
    let config = Config {
        cpus: Some(3),
        bios: Some(4),
        ..Config::default()
    };
    for design in Design::ALL {
        let report = check(Question::HandlerMandatory, design, &config);
        assert_eq!(
            report.verdict("as designed", Property::HandlerPresent),
            Some(Verdict::Holds),
            "{design}"
        );
        assert!(
            report.cases[0].scenario.contains("3 CPUs"),
            "{}",
            report.cases[0].scenario
        );
    }
}

#[test]
fn finding_names_endio_bio() {
    let finding = Question::HandlerMandatory.finding();
    assert!(finding.contains("unrepresentable"), "{finding}");
    assert!(finding.contains("crates/endio/src/bio.rs"), "{finding}");
}
