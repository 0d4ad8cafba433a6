//! The rescuer and another CPU's list: with the WQ_MEM_RECLAIM rescuer
//! running the work on the pool's CPU (what the workqueue does for a per-CPU
//! workqueue) there is no race: the author's answer holds. With an unbound
//! rescuer, the CPU-local protection (local_lock in v6, local_irq_save() in
//! v6-fixed and merged) protects the wrong CPU and an interrupt modifies the
//! list mid-splice; an llist would be safe even then.

use endio_model::{Config, Design, Property, Question, Verdict, check};

#[test]
fn rescuer_on_the_pools_cpu_is_safe() {
    for design in Design::ALL {
        let report = check(Question::RescuerCrossCpu, design, &Config::default());
        assert_eq!(
            report.verdict("rescuer on the pool's CPU", Property::MutualExclusion),
            Some(Verdict::Holds),
            "{design}"
        );
    }
}

#[test]
fn unbound_rescuer_corrupts_the_list() {
    for design in Design::ALL {
        let report = check(Question::RescuerCrossCpu, design, &Config::default());
        let result = report
            .result("rescuer unbound", Property::MutualExclusion)
            .unwrap();
        assert_eq!(result.verdict, Verdict::Violated, "{design}");
        let steps = &result.counterexample.as_ref().unwrap().steps;
        assert!(
            steps
                .iter()
                .any(|s| s.starts_with("rescuer on cpu1 (unbound)")
                    && s.contains("interrupts off on cpu1 only")),
            "{design}: {steps:#?}"
        );
        assert!(
            steps
                .last()
                .unwrap()
                .starts_with("cpu0 irq: bio B completes"),
            "{design}: {steps:#?}"
        );
        assert!(
            steps.last().unwrap().contains("B is lost"),
            "{design}: {steps:#?}"
        );
    }
    let v6 = check(Question::RescuerCrossCpu, Design::V6, &Config::default());
    let steps = &v6
        .result("rescuer unbound", Property::MutualExclusion)
        .unwrap()
        .counterexample
        .as_ref()
        .unwrap()
        .steps;
    assert!(
        steps.iter().any(|s| s.contains("local_lock_irq()")),
        "{steps:#?}"
    );
}

#[test]
fn llist_is_safe_even_unbound() {
    for design in Design::ALL {
        let report = check(Question::RescuerCrossCpu, design, &Config::default());
        assert_eq!(
            report.verdict("rescuer unbound, llist", Property::MutualExclusion),
            Some(Verdict::Holds),
            "{design}"
        );
    }
}

#[test]
fn finding_names_the_workqueue_guarantee() {
    let finding = Question::RescuerCrossCpu.finding();
    assert!(
        finding.contains("rescuer runs a work item on the CPU of the pool"),
        "{finding}"
    );
    assert!(finding.contains("worker_attach_to_pool()"), "{finding}");
}
