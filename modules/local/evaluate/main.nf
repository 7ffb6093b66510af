process EVALUATE {
    tag "${prediction.baseName}"
    label 'process_single'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), path(prediction), path(pseudobulk), path(de)

    output:
    tuple val(meta), path("*.metrics.parquet"), emit: metrics
    path "versions.yml"                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: prediction.name.replaceAll(/\.prediction\.parquet$/, '')
    """
    evaluate.py \\
        --prediction ${prediction} \\
        --pseudobulk ${pseudobulk} \\
        --de ${de} \\
        --out ${prefix}.metrics.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: prediction.name.replaceAll(/\.prediction\.parquet$/, '')
    """
    touch ${prefix}.metrics.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
