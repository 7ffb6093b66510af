/*
 * Predictions of the test perturbations of one split by a group of predictors that share their
 * inputs (the same gene embedding, or none): one parquet per predictor. The workflow includes it a
 * second time as PREDICT_GPU for the torch predictors when --gpu is set.
 */
process PREDICT {
    tag "${meta.id} ${embedding_name} ${split.task} seed${split.seed} fold${split.fold}: ${predictors.join(',')}"
    label 'process_single'

    input:
    tuple val(meta), path(pseudobulk), path(by_batch), path(splits), val(split), val(predictors), val(embedding_name), path(embedding, stageAs: 'embedding/*')

    output:
    tuple val(meta), val(split), path("*.prediction.parquet", arity: '1..*'), emit: prediction
    path "versions.yml"                                                             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def emb  = embedding ? "--gene-embedding ${embedding}" : ''
    """
    predict.py \\
        --pseudobulk ${pseudobulk} \\
        --pseudobulk-by-batch ${by_batch} \\
        --splits ${splits} \\
        --task ${split.task} \\
        --seed ${split.seed} \\
        --fold ${split.fold} \\
        ${predictors.collect { "--predictor ${it}" }.join(' ')} \\
        ${emb} \\
        --dataset ${meta.id} \\
        --out-dir . \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    """
    for predictor in ${predictors.join(' ')}; do
        touch ${meta.id}.\$predictor.${embedding_name}.${split.task}.seed${split.seed}.fold${split.fold}.prediction.parquet
    done
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
