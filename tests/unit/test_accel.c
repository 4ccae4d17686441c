/*
 * Unit tests for vmm/accel: the accelerator decision over injected host
 * facts (no device, a device that does not open or create VMs, hardware
 * flags, a paravirtual KVM module, each forced mode), the probe over fake
 * /dev, cpuinfo and /sys/module paths, and the runtime list and checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "vmm/accel.h"

/* A host with working hardware KVM. */
static const struct hm_virt_facts hw = {
	.kvm_present = true,
	.kvm_opens = true,
	.kvm_creates_vm = true,
	.cpu_hw_virt = true,
};

static void decide_ok(enum hm_accel_mode mode, const struct hm_virt_facts *f, enum hm_accel want,
                      struct hm_accel_choice *c)
{
	struct hm_err *err = NULL;
	assert_int_equal(hm_accel_decide(mode, f, c, &err), 0);
	assert_null(err);
	assert_int_equal(c->accel, want);
}

/* Each reason KVM is unusable, under auto (TCG, saying why) and forced kvm (refused). */
static void expect_unusable(const struct hm_virt_facts *f, const char *why)
{
	struct hm_accel_choice c;
	decide_ok(HM_ACCEL_AUTO, f, HM_ACCEL_TCG, &c);
	assert_false(c.kvm_usable);
	if (!strstr(c.kvm_reason, why) || !strstr(c.reason, why))
		fail_msg("reason `%s` / `%s` does not say `%s`", c.kvm_reason, c.reason, why);
	decide_ok(HM_ACCEL_FORCE_TCG, f, HM_ACCEL_TCG, &c);

	struct hm_err *err = NULL;
	assert_true(hm_accel_decide(HM_ACCEL_FORCE_KVM, f, &c, &err) < 0);
	assert_non_null(err);
	assert_int_equal(err->kind, HM_ERR_UNAVAILABLE);
	if (!strstr(err->msg, why) || !strstr(err->msg, "ACCEL=kvm"))
		fail_msg("refusal `%s` does not say `%s`", err->msg, why);
	hm_err_free(err);
	/* NULL err is allowed */
	assert_true(hm_accel_decide(HM_ACCEL_FORCE_KVM, f, &c, NULL) < 0);
}

static void decisions(void **state)
{
	(void)state;
	struct hm_accel_choice c;
	decide_ok(HM_ACCEL_AUTO, &hw, HM_ACCEL_KVM, &c);
	assert_true(c.kvm_usable);
	assert_string_equal(c.kvm_reason, "");
	decide_ok(HM_ACCEL_FORCE_KVM, &hw, HM_ACCEL_KVM, &c);
	decide_ok(HM_ACCEL_FORCE_TCG, &hw, HM_ACCEL_TCG, &c);
	assert_true(c.kvm_usable); /* usable, just not chosen */
	assert_non_null(strstr(c.reason, "ACCEL=tcg"));

	struct hm_virt_facts f = { 0 };
	expect_unusable(&f, "no /dev/kvm");
	f = hw;
	f.kvm_opens = f.kvm_creates_vm = false;
	snprintf(f.open_error, sizeof(f.open_error), "Permission denied");
	expect_unusable(&f, "does not open (Permission denied)");
	f = hw;
	f.kvm_creates_vm = false;
	snprintf(f.open_error, sizeof(f.open_error), "KVM_CREATE_VM: Inappropriate ioctl");
	expect_unusable(&f, "does not create a VM");
	/* The host this project runs on: it opens and creates VMs, and is paravirtual. */
	f = hw;
	f.cpu_hw_virt = false;
	snprintf(f.pv_module, sizeof(f.pv_module), "kvm_pvm");
	expect_unusable(&f, "paravirtual KVM (module kvm_pvm)");
	/* A paravirtual module wins even where the CPU claims vmx. */
	f.cpu_hw_virt = true;
	expect_unusable(&f, "kvm_pvm");
	f = hw;
	f.cpu_hw_virt = false;
	expect_unusable(&f, "no vmx or svm");
}

static void mode_names(void **state)
{
	(void)state;
	enum hm_accel_mode m = HM_ACCEL_FORCE_TCG;
	assert_int_equal(hm_accel_mode_parse("auto", &m), 0);
	assert_int_equal(m, HM_ACCEL_AUTO);
	assert_int_equal(hm_accel_mode_parse("kvm", &m), 0);
	assert_int_equal(m, HM_ACCEL_FORCE_KVM);
	assert_int_equal(hm_accel_mode_parse("tcg", &m), 0);
	assert_int_equal(m, HM_ACCEL_FORCE_TCG);
	assert_true(hm_accel_mode_parse("", &m) < 0);
	assert_true(hm_accel_mode_parse("TCG", &m) < 0);
	assert_true(hm_accel_mode_parse(NULL, &m) < 0);
	assert_string_equal(hm_accel_name(HM_ACCEL_KVM), "kvm");
	assert_string_equal(hm_accel_name(HM_ACCEL_TCG), "tcg");
	assert_int_equal(hm_accel_from_name("kvm"), HM_ACCEL_KVM);
	assert_int_equal(hm_accel_from_name("tcg"), HM_ACCEL_TCG);
	assert_int_equal(hm_accel_from_name("hvf"), -1);
	assert_int_equal(hm_accel_from_name(NULL), -1);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* The probe over fake paths: a regular file is no KVM device, flags are whole words. */
static void probe_paths(void **state)
{
	(void)state;
	char dir[] = "/tmp/hm-accel-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char dev[64], cpu[64], mods[64], pvm[96];
	snprintf(dev, sizeof(dev), "%s/kvm", dir);
	snprintf(cpu, sizeof(cpu), "%s/cpuinfo", dir);
	snprintf(mods, sizeof(mods), "%s/module", dir);
	snprintf(pvm, sizeof(pvm), "%s/kvm_pvm", mods);
	assert_int_equal(mkdir(mods, 0755), 0);

	struct hm_virt_facts f;
	write_file(cpu, "processor : 0\nflags : fpu vmxx svmlike hypervisor\n");
	hm_virt_probe_at(dev, cpu, mods, &f);
	assert_false(f.kvm_present);
	assert_false(f.cpu_hw_virt);
	assert_string_equal(f.pv_module, "");

	write_file(cpu, "processor : 0\nflags\t\t: fpu vme vmx\nprocessor : 1\n");
	write_file(dev, "not a device");
	assert_int_equal(mkdir(pvm, 0755), 0);
	hm_virt_probe_at(dev, cpu, mods, &f);
	assert_true(f.kvm_present);
	assert_true(f.kvm_opens);
	assert_false(f.kvm_creates_vm); /* a plain file answers no KVM ioctl */
	assert_non_null(strstr(f.open_error, "KVM_CREATE_VM"));
	assert_true(f.cpu_hw_virt);
	assert_string_equal(f.pv_module, "kvm_pvm");

	write_file(cpu, "flags : svm\n");
	hm_virt_probe_at(dev, cpu, mods, &f);
	assert_true(f.cpu_hw_virt);
	/* a missing cpuinfo is no hardware virtualization */
	hm_virt_probe_at(dev, "/nonexistent/cpuinfo", mods, &f);
	assert_false(f.cpu_hw_virt);

	/* This host: whatever it has, the probe and the decision agree with themselves. */
	hm_virt_probe(&f);
	struct hm_accel_choice c;
	assert_int_equal(hm_accel_decide(HM_ACCEL_AUTO, &f, &c, NULL), 0);
	assert_int_equal(c.accel == HM_ACCEL_KVM, c.kvm_usable);
	print_message("this host: accel=%s (%s)\n", hm_accel_name(c.accel), c.reason);

	unlink(dev);
	unlink(cpu);
	rmdir(pvm);
	rmdir(mods);
	rmdir(dir);
}

static const struct hm_runtime *find(const struct hm_runtime *rt, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(rt[i].name, name) == 0)
			return &rt[i];
	fail_msg("runtime %s not listed", name);
	return NULL;
}

static void runtimes(void **state)
{
	(void)state;
	struct hm_accel_choice tcg, kvm;
	struct hm_virt_facts pv = hw;
	snprintf(pv.pv_module, sizeof(pv.pv_module), "kvm_pvm");
	assert_int_equal(hm_accel_decide(HM_ACCEL_AUTO, &pv, &tcg, NULL), 0);
	assert_int_equal(hm_accel_decide(HM_ACCEL_AUTO, &hw, &kvm, NULL), 0);

	struct hm_runtime rt[HM_RUNTIMES_MAX];
	size_t n = hm_runtimes(&tcg, rt);
	assert_int_equal(n, 4);
	for (size_t i = 1; i < n; i++) /* sorted by name */
		assert_true(strcmp(rt[i - 1].name, rt[i].name) < 0);
	const struct hm_runtime *fc = find(rt, n, "firecracker");
	assert_false(fc->available);
	assert_non_null(strstr(fc->reason, "no firecracker backend"));
	assert_non_null(strstr(fc->reason, "kvm_pvm"));
	assert_null(fc->features[0]);
	const struct hm_runtime *ch = find(rt, n, "cloud-hypervisor");
	assert_false(ch->available);
	const struct hm_runtime *q = find(rt, n, "qemu");
	assert_string_equal(q->accelerator, "tcg");
	/* make setup installs QEMU: it must be there */
	if (!q->available)
		fail_msg("qemu is not available: %s", q->reason);
	assert_non_null(q->features[0]);

	/* Hardware KVM: CH and FC still have no backend, and say only that (and a binary). */
	n = hm_runtimes(&kvm, rt);
	fc = find(rt, n, "firecracker");
	assert_false(fc->available);
	assert_null(strstr(fc->reason, "hardware KVM"));
	assert_string_equal(find(rt, n, "qemu")->accelerator, "kvm");

	/* The create check: the runtime and the reason named; unknown names too. */
	struct hm_err *err = NULL;
	assert_true(hm_runtime_check(&tcg, "firecracker", &err) < 0);
	assert_int_equal(err->kind, HM_ERR_INVALID);
	assert_string_equal(err->code, "unsupported_hypervisor");
	assert_non_null(strstr(err->msg, "`firecracker`"));
	assert_non_null(strstr(err->msg, "kvm_pvm"));
	hm_err_free(err);
	err = NULL;
	assert_true(hm_runtime_check(&tcg, "xen", &err) < 0);
	assert_non_null(strstr(err->msg, "unknown hypervisor `xen`"));
	hm_err_free(err);
	err = NULL;

	/* QEMU is available exactly when its binary runs: a missing one says which. */
	char *saved = getenv("HYPEMAN_QEMU") ? strdup(getenv("HYPEMAN_QEMU")) : NULL;
	setenv("HYPEMAN_QEMU", "/nonexistent/qemu-system-x86_64", 1);
	n = hm_runtimes(&tcg, rt);
	q = find(rt, n, "qemu");
	assert_false(q->available);
	assert_non_null(strstr(q->reason, "/nonexistent/qemu-system-x86_64"));
	assert_true(hm_runtime_check(&tcg, "qemu", &err) < 0);
	hm_err_free(err);
	if (saved)
		setenv("HYPEMAN_QEMU", saved, 1);
	else
		unsetenv("HYPEMAN_QEMU");
	free(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decisions),
		cmocka_unit_test(mode_names),
		cmocka_unit_test(probe_paths),
		cmocka_unit_test(runtimes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
