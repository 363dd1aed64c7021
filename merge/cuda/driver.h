#ifndef HUBSYNC_DRIVER_H
#define HUBSYNC_DRIVER_H
enum { HS_NO_DRIVER = 1, HS_DRIVER_ERROR = 2, HS_NO_DEVICE = 3 };
int hs_probe(char *name, int name_len, char *msg, int msg_len);
#endif
