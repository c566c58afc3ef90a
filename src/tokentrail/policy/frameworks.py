"""The framework identifiers findings map to, as shared/STANDARDS.md names them.

Only identifiers listed here may appear in a rule's mappings (a test checks
it), so a typo or a withdrawn CSF 1.1 id such as ``PR.AC-4`` cannot slip in.

- OWASP Non-Human Identities Top 10 (2025): ``NHI7:2025`` (STANDARDS.md §1).
  It covers non-human identities only; human-session rules cite SP 800-63B-4.
- NIST CSF 2.0 subcategories, zero-padded: ``PR.AA-01`` (§2).
- NIST SP 800-207 §2.1 tenets, cited one by one: "SP 800-207 §2.1 tenet 3" (§3).
- NIST SP 800-63B-4 sections: "SP 800-63B-4 §2.2.3" (§4).
"""

from __future__ import annotations

OWASP_NHI: dict[str, str] = {
    "NHI1:2025": "Improper Offboarding",
    "NHI2:2025": "Secret Leakage",
    "NHI3:2025": "Vulnerable Third-Party NHI",
    "NHI4:2025": "Insecure Authentication",
    "NHI5:2025": "Overprivileged NHI",
    "NHI6:2025": "Insecure Cloud Deployment Configurations",
    "NHI7:2025": "Long-Lived Secrets",
    "NHI8:2025": "Environment Isolation",
    "NHI9:2025": "NHI Reuse",
    "NHI10:2025": "Human Use of NHI",
}

CSF: dict[str, str] = {
    "GV.RR-02": "Cyber risk roles, responsibilities and authorities are established, "
    "communicated, understood and enforced",
    "ID.AM-02": "Inventories of software, services and systems are maintained",
    "ID.AM-08": "Systems, hardware, software, services and data are managed through their "
    "life cycles",
    "PR.AA-01": "Identities and credentials of authorized users, services and hardware are "
    "managed by the organization",
    "PR.AA-02": "Identities are proofed and bound to credentials based on the context of "
    "interactions",
    "PR.AA-03": "Users, services and hardware are authenticated",
    "PR.AA-04": "Identity assertions are protected, conveyed and verified",
    "PR.AA-05": "Access permissions, entitlements and authorizations are defined in policy, "
    "managed, enforced, reviewed, and follow least privilege and separation of duties",
    "PR.PS-04": "Log records are generated and made available for continuous monitoring",
    "DE.CM-03": "Personnel activity and technology usage are monitored",
    "DE.CM-09": "Hardware, software, runtime environments and their data are monitored "
    "(including authentication attempts and unauthorized credential reuse)",
    "RS.AN-06": "Investigation actions are recorded; records' integrity and provenance are "
    "preserved",
    "RS.MI-01": "Incidents are contained",
}

ZTA_TENETS: dict[int, str] = {
    1: "All data sources and computing services are treated as resources",
    2: "All communication is secured regardless of network location",
    3: "Access to each enterprise resource is granted per session",
    4: "Access is decided by dynamic policy",
    5: "The enterprise monitors and measures the integrity and security posture of all "
    "owned and associated assets",
    6: "All resource authentication and authorization is dynamic and strictly enforced "
    "before access, with continual monitoring and possible reauthentication",
    7: "The enterprise collects information about assets, network infrastructure and "
    "communications and uses it to improve its security posture",
}

SP800_63B: dict[str, str] = {
    "§2.1.3": "AAL1 reauthentication: an overall timeout SHALL be set, SHOULD be at most 30 days",
    "§2.2.3": "AAL2 reauthentication: overall timeout SHOULD be at most 24 hours, "
    "inactivity timeout SHOULD be at most 1 hour",
    "§2.3.3": "AAL3 reauthentication: overall timeout SHALL be at most 12 hours, "
    "inactivity timeout SHOULD be at most 15 minutes",
    "§4.2": "Account recovery: recovery methods, and what each assurance level requires",
    "§4.6": "Notifications to the subscriber (every recovery SHALL notify)",
    "§5.1": "Session bindings and session secrets",
    "§5.2": "Reauthentication: session limits are documented, timers reset and expire",
}


def zta_label(tenet: int) -> str:
    """``SP 800-207 §2.1 tenet 3``."""
    return f"SP 800-207 §2.1 tenet {tenet}"


def sp800_63b_label(section: str) -> str:
    """``SP 800-63B-4 §2.2.3``."""
    return f"SP 800-63B-4 {section}"


def is_known(kind: str, ident: str | int) -> bool:
    """Whether ``ident`` is a catalogued identifier of framework ``kind``."""
    catalog: dict[str, dict[str, str] | dict[int, str]] = {
        "owasp": OWASP_NHI,
        "csf": CSF,
        "zta": ZTA_TENETS,
        "sp800_63b": SP800_63B,
    }
    return ident in catalog[kind]
