#include "kpi.h"
