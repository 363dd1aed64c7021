//go:build cuda

// driver.c reaches the CUDA driver API through dlopen("libcuda.so.1"), so building and linking -tags cuda needs
// neither the CUDA toolkit nor a GPU driver; only the prototypes used here are declared.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "driver.h"

typedef int (*fn_cuInit)(unsigned int);
typedef int (*fn_cuDeviceGetCount)(int *);
typedef int (*fn_cuDeviceGet)(int *, int);
typedef int (*fn_cuDeviceGetName)(char *, int, int);
typedef int (*fn_cuGetErrorName)(int, const char **);

// hs_probe opens the driver and counts devices. It returns 0 with the first device's name in name when a device
// answers, else a nonzero code (HS_NO_DRIVER, HS_DRIVER_ERROR, HS_NO_DEVICE) with the reason in msg.
int hs_probe(char *name, int name_len, char *msg, int msg_len) {
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(msg, msg_len, "no NVIDIA driver: %s", e ? e : "cannot open libcuda.so.1");
		return HS_NO_DRIVER;
	}
	fn_cuInit init = (fn_cuInit)dlsym(h, "cuInit");
	fn_cuDeviceGetCount count = (fn_cuDeviceGetCount)dlsym(h, "cuDeviceGetCount");
	fn_cuDeviceGet get = (fn_cuDeviceGet)dlsym(h, "cuDeviceGet");
	fn_cuDeviceGetName getname = (fn_cuDeviceGetName)dlsym(h, "cuDeviceGetName");
	fn_cuGetErrorName errname = (fn_cuGetErrorName)dlsym(h, "cuGetErrorName");
	if (!init || !count || !get || !getname) {
		snprintf(msg, msg_len, "libcuda.so.1 lacks the driver API (cuInit, cuDeviceGetCount)");
		return HS_DRIVER_ERROR;
	}
	int rc = init(0);
	if (rc != 0) {
		const char *en = NULL;
		if (errname) errname(rc, &en);
		if (rc == 100) { // CUDA_ERROR_NO_DEVICE
			snprintf(msg, msg_len, "no CUDA device (cuInit: %s)", en ? en : "CUDA_ERROR_NO_DEVICE");
			return HS_NO_DEVICE;
		}
		snprintf(msg, msg_len, "CUDA driver failed to initialise (cuInit: %s, error %d)", en ? en : "?", rc);
		return HS_DRIVER_ERROR;
	}
	int n = 0;
	if (count(&n) != 0 || n <= 0) {
		snprintf(msg, msg_len, "no CUDA device (the driver reports none)");
		return HS_NO_DEVICE;
	}
	int dev;
	if (get(&dev, 0) != 0 || getname(name, name_len, dev) != 0) {
		snprintf(name, name_len, "device 0");
	}
	// The handle stays open: the backend uses the same driver for the life of the process.
	return 0;
}
