/*
 * Tianmu demo rules, written for the demo target (demo/target/files/). Our own work, CC0.
 * They show what a rule's metadata turns into in a finding: description, author, reference,
 * ATT&CK technique (from the `mitre_attack` field and the tags) and severity (from `score`).
 */

rule Northwind_Demo_PHP_Eval_Webshell : T1505_003 webshell
{
    meta:
        description = "PHP file that evaluates base64-decoded request data: a classic one-line web shell"
        author = "Tianmu demo"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"
        date = "2026-11-25"
        score = 85
    strings:
        $php = "<?php"
        $eval = /eval\s*\(\s*base64_decode\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)/ nocase
    condition:
        $php at 0 and $eval and filesize < 64KB
}

rule Northwind_Demo_Exfil_Script_Marker
{
    meta:
        description = "Script that posts a packed archive of /etc to a paste site (demo marker)"
        author = "Tianmu demo"
        mitre_attack = "T1048"
        score = 65
    strings:
        $tar = "tar czf - /etc"
        $curl = /curl\s+-s\s+-X\s*POST/
    condition:
        all of them and filesize < 16KB
}
